"""Real parts for failover tests on loopback: memcached processes, a link that can be
cut like a firewall cuts it, and a small failover router.

The host's memcached (bookworm) has no proxy, and mcrouter is not installable here, so
the tests route through `FailoverRouter`: a real TCP server speaking the memcached text
protocol with mcrouter's failover semantics (facebook/mcrouter's FailoverRoute and TKO
tracking): keys sharded by hash of
the routing key (prefix stripped), a shard marked TKO after consecutive failures, its
keys then sent to the gutter with a capped TTL, version probes re-admitting it. It is
deliberately small; it is a test double for mcrouter/the memcached proxy, not a product.

`Link` sits between the router and one shard, as the network does. `block("reject")`
closes its listener and resets its connections (the kernel then refuses new connects,
like `REJECT --reject-with tcp-reset`); `block("drop")` swallows bytes (requests stall
until the client's timeout, like `DROP`). The verifier reaches the shard directly, not
through the link, just as a verifier on the controller is outside a block limited to
the routers' addresses.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib

from ansible_collections.mcfleet.fleet.plugins.module_utils.failover_verify import FailoverVerifier
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import (
    MemcacheClient,
    MemcacheConnectionError,
    MemcacheError,
    MemcacheTimeout,
)

MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"
PREFIX = "/eqiad/mw/"
GUTTER_TTL_S = 2


def free_port() -> int:
    """An ephemeral loopback port nobody listens on right now (never 11211)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != 11211:
            return port


def wait_for_port(port: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


class MemcachedProcess:
    """One real memcached on 127.0.0.1, on a free port, stopped on exit."""

    def __init__(self, memory_mb: int = 32, extra_args: tuple[str, ...] = ()):
        self.port = free_port()
        cmd = [MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", str(memory_mb), "-t", "1"]
        cmd += list(extra_args)
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)

    @property
    def spec(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def pause(self) -> None:
        """Stop every thread, and return only once they are stopped.

        kill() returns before the signal is delivered: on a loaded machine a worker
        thread already on a CPU can still answer a request sent right after it."""
        self.proc.send_signal(signal.SIGSTOP)
        tasks = f"/proc/{self.proc.pid}/task"
        deadline = time.monotonic() + 10
        while True:
            states = []
            for tid in os.listdir(tasks):
                with contextlib.suppress(FileNotFoundError), open(f"{tasks}/{tid}/stat") as stat:
                    # The state follows the command name, which is in parentheses.
                    states.append(stat.read().rsplit(")", 1)[1].split()[0])
            if states and all(state in ("T", "t") for state in states):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"memcached {self.proc.pid} did not stop: thread states {states}")
            time.sleep(0.01)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        # SIGKILL, not SIGTERM: memcached acts on SIGTERM only at its next one-second clock
        # tick, and a test's server has nothing to save. It also ends a paused (SIGSTOP) one.
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Link:
    """A TCP forwarder to one server that can be cut (reject) or made to stall (drop)."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self.mode: str | None = None
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener: socket.socket | None = None
        self._placeholder: socket.socket | None = None
        self._closed = False
        self._listen()

    def _listen(self) -> None:
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        listener = self._bind(socket.socket())
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _bind(self, sock: socket.socket) -> socket.socket:
        # A closed listener lingers until the accept thread's poll returns (<= 0.1 s).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _attempt in range(100):
            try:
                sock.bind(("127.0.0.1", self.port))
                return sock
            except OSError:
                time.sleep(0.02)
        sock.bind(("127.0.0.1", self.port))
        return sock

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            src.settimeout(0.1)
        except OSError:
            # The other direction's pump closed both sockets first: nothing left to carry.
            return
        while not self._closed:
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if self.mode == "drop":
                continue  # swallowed: the sender waits for a reply that never comes
            try:
                dst.sendall(data)
            except OSError:
                break
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.close()

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        # SO_LINGER 0 makes close() send a RST, as REJECT --reject-with tcp-reset does.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            sock.close()

    def block(self, mode: str) -> None:
        if mode not in ("reject", "drop"):
            raise ValueError(mode)
        self.mode = mode
        if mode == "reject":
            listener, self._listener = self._listener, None
            if listener is not None:
                listener.close()
                # Bound but not listening: connects get a RST (refused), and no outgoing
                # connection can take the port meanwhile.
                self._placeholder = self._bind(socket.socket())
            with self._lock:
                pairs, self._pairs = self._pairs, []
            for client, upstream in pairs:
                self._reset(client)
                self._reset(upstream)

    def unblock(self) -> None:
        self.mode = None
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self._closed = True
        if self._placeholder is not None:
            self._placeholder.close()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for client, upstream in self._pairs:
                client.close()
                upstream.close()
            self._pairs = []


class FailoverRouter:
    """A minimal mcrouter-like failover router (see the module docstring)."""

    def __init__(
        self,
        shards: list[tuple[str, int]],
        gutter: list[tuple[str, int]],
        route_prefix: str = "/eqiad/mw/",
        gutter_ttl_s: int = 2,
        backend_timeout_s: float = 0.3,
        failures_until_tko: int = 1,
        probe_interval_s: float = 0.3,
        delete_to_gutter: bool = True,
    ):
        self.shards = shards
        self.gutter = gutter
        self.route_prefix = route_prefix
        self.gutter_ttl_s = gutter_ttl_s
        self.backend_timeout_s = backend_timeout_s
        self.failures_until_tko = failures_until_tko
        self.probe_interval_s = probe_interval_s
        self.delete_to_gutter = delete_to_gutter
        self.tko: set[int] = set()
        self.failures: dict[int, int] = {}
        self.port = free_port()
        self._stopping = False
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=64)
        self._listener.settimeout(0.1)
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._probe, daemon=True).start()

    @property
    def spec(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def stop(self) -> None:
        self._stopping = True
        self._listener.close()

    # -- routing ----------------------------------------------------------------

    def _shard_of(self, routing_key: str) -> int:
        return zlib.crc32(routing_key.encode()) % len(self.shards)

    def _gutter_of(self, routing_key: str) -> tuple[str, int]:
        return self.gutter[zlib.crc32(routing_key.encode()) % len(self.gutter)]

    def _fail(self, index: int) -> None:
        self.failures[index] = self.failures.get(index, 0) + 1
        if self.failures[index] >= self.failures_until_tko:
            self.tko.add(index)

    def _probe(self) -> None:
        while not self._stopping:
            time.sleep(self.probe_interval_s)
            for index in list(self.tko):
                try:
                    with MemcacheClient(*self.shards[index], timeout_s=self.backend_timeout_s) as probe:
                        probe.version()
                except MemcacheError:
                    continue
                self.failures[index] = 0
                self.tko.discard(index)

    def _call(self, clients: dict, key: str, op):
        """Runs op(client, routing_key, on_gutter) on the key's shard, or on the gutter."""
        routing_key = key[len(self.route_prefix) :] if key.startswith(self.route_prefix) else key
        index = self._shard_of(routing_key)
        if index not in self.tko:
            client = clients.setdefault(
                ("shard", index), MemcacheClient(*self.shards[index], timeout_s=self.backend_timeout_s)
            )
            try:
                return op(client, routing_key, False)
            except (MemcacheError, OSError) as exc:
                unreachable = isinstance(exc, (MemcacheConnectionError, MemcacheTimeout, OSError))
                if not unreachable:  # an error reply, not an unreachable server
                    raise
                self._fail(index)
                if index not in self.tko:
                    raise
        target = self._gutter_of(routing_key)
        client = clients.setdefault(
            ("gutter", target), MemcacheClient(*target, timeout_s=self.backend_timeout_s)
        )
        return op(client, routing_key, True)

    # -- protocol ---------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping:
            try:
                conn, _peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        clients: dict = {}
        reader = conn.makefile("rb")
        try:
            while not self._stopping:
                line = reader.readline()
                if not line:
                    return
                parts = line.split()
                if not parts:
                    continue
                conn.sendall(self._handle(clients, parts, reader))
        except OSError:
            return
        finally:
            for client in clients.values():
                client.close()
            conn.close()

    def _handle(self, clients: dict, parts: list[bytes], reader) -> bytes:
        command = parts[0].decode()
        try:
            if command in ("get", "gets"):
                out = b""
                for raw in parts[1:]:
                    key = raw.decode()
                    value = self._call(clients, key, lambda c, k, _g: c.get(k))
                    if value is not None:
                        out += b"VALUE %s 0 %d\r\n%s\r\n" % (raw, len(value), value)
                return out + b"END\r\n"
            if command == "set":
                key, _flags, exptime, size = parts[1].decode(), parts[2], int(parts[3]), int(parts[4])
                data = reader.read(size + 2)[:-2]

                def store(client, routing_key, on_gutter):
                    ttl = exptime
                    if on_gutter and self.gutter_ttl_s:
                        ttl = min(exptime, self.gutter_ttl_s) if exptime else self.gutter_ttl_s
                    return client.set(routing_key, data, exptime=ttl)

                return b"STORED\r\n" if self._call(clients, key, store) else b"NOT_STORED\r\n"
            if command == "delete":
                key = parts[1].decode()

                def remove(client, routing_key, on_gutter):
                    if on_gutter and not self.delete_to_gutter:
                        return False  # mcrouter spools it and answers NOT_FOUND
                    return client.delete(routing_key)

                return b"DELETED\r\n" if self._call(clients, key, remove) else b"NOT_FOUND\r\n"
            if command == "version":
                return b"VERSION failover-test-router\r\n"
            return b"ERROR\r\n"
        except (MemcacheError, OSError) as exc:
            return b"SERVER_ERROR %s\r\n" % str(exc).replace("\r\n", " ").encode()[:200]


class Fleet:
    """3 shards and 1 gutter (real memcached), a link per shard, and the failover router."""

    def __init__(self, gutter_ttl_s: int = GUTTER_TTL_S, delete_to_gutter: bool = True):
        self.shards = [MemcachedProcess() for _shard in range(3)]
        self.gutter = MemcachedProcess()
        self.links = [Link(s.spec) for s in self.shards]
        self.router = FailoverRouter(
            [("127.0.0.1", link.port) for link in self.links],
            [self.gutter.spec],
            route_prefix=PREFIX,
            gutter_ttl_s=gutter_ttl_s,
            delete_to_gutter=delete_to_gutter,
        )

    def topology(self) -> dict:
        return {
            "router": {"address": "127.0.0.1", "port": self.router.port},
            "shards": [
                {"host": f"mc100{i + 1}", "address": "127.0.0.1", "port": s.port}
                for i, s in enumerate(self.shards)
            ],
            "gutter": [{"host": "mc-gp1001", "address": "127.0.0.1", "port": self.gutter.port}],
            "route_prefix": PREFIX,
        }

    def verifier(self, **kwargs) -> FailoverVerifier:
        return FailoverVerifier(**self.topology(), poll_interval_s=0.05, **kwargs)

    def close(self) -> None:
        self.router.stop()
        for link in self.links:
            link.close()
        for proc in [*self.shards, self.gutter]:
            proc.stop()
