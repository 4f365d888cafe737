"""Router throughput against direct memcached, as a ratio (issue 3, "figures for your note").

Runs the same bounded workload twice, once through a router and once straight at one
memcached shard: THREADS clients, each with its own connection, each doing OPS requests
alternating `set` and `get` of its own keys, one request in flight per connection (the
way a PHP app server talks to its local router). Keys through the router carry the
routing prefix; the direct run uses the stripped keys, as the router stores them.
Gets are meta `mg KEY v` by default, as our clients read through memcached's proxy
(its text get replies name the stripped key); `--read-protocol text` for mcrouter.

    .venv/bin/python benchmarks/bench_router.py --router 10.89.215.15:11213 \\
        --direct 10.89.215.11:11211 --prefix /eqiad/mw/

Addresses must be loopback or the lab's own containers. Prints one JSON document.
"""

import argparse
import json
import socket
import threading
import time

TIMEOUT_S = 5.0


class BenchClient:
    """set, and text or meta get, over one socket; replies are checked, keys not echoed."""

    def __init__(self, address, read_protocol):
        self.read_protocol = read_protocol
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def _read_until(self, marker):
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk
        reply, self.buffer = self.buffer.split(marker, 1)
        return reply + marker

    def set(self, key, value):
        self.sock.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
        return self._read_until(b"\r\n") == b"STORED\r\n"

    def get(self, key):
        meta = self.read_protocol == "meta"
        self.sock.sendall((b"mg %s v\r\n" if meta else b"get %s\r\n") % key)
        reply = self._read_until(b"\r\n")
        if reply == (b"EN\r\n" if meta else b"END\r\n"):
            return None
        if not reply.startswith(b"VA " if meta else b"VALUE "):
            raise ConnectionError(f"unexpected reply {reply!r}")
        length = int(reply.split()[1 if meta else 3])
        while len(self.buffer) < length + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk
        value, self.buffer = self.buffer[:length], self.buffer[length + 2 :]
        if not meta:
            self._read_until(b"END\r\n")
        return value

    def close(self):
        self.sock.close()


def run(address, prefix, threads, ops, value_size, max_seconds, read_protocol):
    """Requests per second of `threads` clients doing `ops` requests each, and their errors."""
    value = b"x" * value_size
    counts = [0] * threads
    errors = [0] * threads
    deadline = time.monotonic() + max_seconds

    def worker(index):
        client = BenchClient(address, read_protocol)
        try:
            for i in range(ops // 2):
                if time.monotonic() > deadline:
                    break
                key = f"{prefix}bench-{index}-{i % 1000}".encode()
                if not client.set(key, value):
                    errors[index] += 1
                if client.get(key) != value:
                    errors[index] += 1
                counts[index] += 2
        finally:
            client.close()

    workers = [threading.Thread(target=worker, args=(index,)) for index in range(threads)]
    started = time.monotonic()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.monotonic() - started
    requests = sum(counts)
    return {
        "address": address,
        "requests": requests,
        "errors": sum(errors),
        "seconds": round(elapsed, 3),
        "requests_per_s": round(requests / elapsed, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--router", required=True, help="router host:port")
    parser.add_argument("--direct", required=True, help="one memcached shard host:port")
    parser.add_argument("--prefix", default="/eqiad/mw/", help="routing prefix of keys sent to the router")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--ops", type=int, default=20000, help="requests per client")
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="stop each run after this")
    parser.add_argument("--read-protocol", choices=("meta", "text"), default="meta", help="how gets are sent")
    args = parser.parse_args(argv)
    workload = (args.threads, args.ops, args.value_size, args.max_seconds, args.read_protocol)
    direct = run(args.direct, "", *workload)
    router = run(args.router, args.prefix, *workload)
    result = {
        "workload": {
            "threads": args.threads,
            "requests_per_client": args.ops,
            "mix": "set/get alternating, 1 in flight per connection",
            "read_protocol": args.read_protocol,
            "value_bytes": args.value_size,
        },
        "direct": direct,
        "router": router,
        "router_to_direct_ratio": round(router["requests_per_s"] / direct["requests_per_s"], 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
