"""Probe a memcached server from another container; print one JSON object.

usage: memcached_probe.py HOST PORT [--tls | --udp | --connect-only]
  tcp:  "ok" | "refused" | "timeout", and when ok (unless --connect-only): the set/get
        round trip, `stats settings` and `stats`
  udp:  "reply" | "refused" (ICMP port unreachable) | "silent" (nothing within the timeout)
Runs on the containers' own python3 (3.9 on bullseye): standard library only.
"""

import json
import os
import socket
import ssl
import sys

TIMEOUT_S = 3


def read_until(sock, terminator):
    data = b""
    while not data.endswith(terminator):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


def command(sock, text, terminator=b"END\r\n"):
    sock.sendall(text.encode() + b"\r\n")
    return read_until(sock, terminator)


def probe_tcp(host, port, use_tls, connect_only=False):
    try:
        sock = socket.create_connection((host, port), timeout=TIMEOUT_S)
    except ConnectionRefusedError:
        return {"tcp": "refused"}
    except OSError as error:
        return {"tcp": "timeout", "error": str(error)}
    if connect_only:
        sock.close()
        return {"tcp": "ok"}
    if use_tls:
        context = ssl.create_default_context()
        # A throwaway self-signed certificate: this checks the TLS listener, not the PKI.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock)
    with sock:
        key = "mcfleet-probe-" + os.urandom(4).hex()
        value = os.urandom(8).hex()
        stored = command(sock, f"set {key} 0 60 {len(value)}\r\n{value}", b"\r\n").strip()
        fetched = command(sock, f"get {key}")
        settings = {}
        for line in command(sock, "stats settings").splitlines():
            parts = line.split(" ", 2)
            if parts[0] == "STAT" and len(parts) == 3:
                settings[parts[1]] = parts[2]
        stats = {}
        for line in command(sock, "stats").splitlines():
            parts = line.split(" ", 2)
            if parts[0] == "STAT" and len(parts) == 3:
                stats[parts[1]] = parts[2]
    return {
        "tcp": "ok",
        "tls": use_tls,
        "stored": stored,
        "roundtrip": stored == "STORED" and f"\r\n{value}\r\n" in fetched,
        "settings": settings,
        "stats": stats,
    }


def probe_udp(host, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT_S)
    sock.connect((host, port))
    # memcached's UDP frame: request id, sequence number, datagram count, reserved.
    frame = b"\x00\x01\x00\x00\x00\x01\x00\x00" + b"stats\r\n"
    try:
        sock.send(frame)
        sock.recv(65536)
        return {"udp": "reply"}
    except ConnectionRefusedError:
        return {"udp": "refused"}
    except socket.timeout:  # noqa: UP041 - not yet TimeoutError on bullseye's Python 3.9
        return {"udp": "silent"}
    finally:
        sock.close()


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    if "--udp" in sys.argv:
        result = probe_udp(host, port)
    else:
        result = probe_tcp(host, port, "--tls" in sys.argv, "--connect-only" in sys.argv)
    result["prober"] = socket.gethostname()
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
