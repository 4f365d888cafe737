"""A small memcached text-protocol client over plain sockets.

Modules run on target hosts where pymemcache is not installed, so the verifier, the
traffic generator and the drill helpers speak the protocol themselves. Only the
commands they need: get/gets (multi-key), set, delete, flush_all, stats, version,
refresh_certs.

Reads through a router use the protocol its engine answers correctly (READ_PROTOCOLS):
memcached's proxy (1.6.38) strips the routing prefix with `r:ltrimkey()`, and a text
`get /eqiad/mw/foo` then answers `VALUE foo ...`, the stripped key, which no client can
match to its request; its Lua API cannot rewrite that reply (response mutators cannot
copy a value, responses expose no value). A meta get (`mg KEY v f`) carries no key in
its reply, so it reads prefixed keys correctly. mcrouter speaks no meta protocol
(facebook/mcrouter#335) and echoes the key as asked, so reads through it stay text.

Every call has a timeout. After a timeout or a broken connection the socket is
dropped, because the reply may still arrive later and would be read as the answer
to the next request; the next call reconnects.
"""

from __future__ import annotations

import contextlib
import socket

MAX_KEY_BYTES = 250
# Read protocol per router engine (the topology model's `engine`); see the module docstring.
READ_PROTOCOLS = {"mcrouter": "text", "memcached_proxy": "meta"}


class MemcacheError(Exception):
    """The server answered with ERROR, CLIENT_ERROR or SERVER_ERROR, or garbage."""


class MemcacheConnectionError(MemcacheError):
    """The server could not be reached or closed the connection."""


class MemcacheTimeout(MemcacheError):
    """No complete reply within the timeout."""


def check_key(key: str) -> bytes:
    raw = key.encode()
    if not raw or len(raw) > MAX_KEY_BYTES:
        raise ValueError(f"memcached key must be 1..{MAX_KEY_BYTES} bytes: {key!r}")
    if any(b <= 32 or b == 127 for b in raw):
        raise ValueError(f"memcached key must not contain spaces or control characters: {key!r}")
    return raw


class MemcacheClient:
    """One connection to one memcached-protocol server (memcached, mcrouter, proxy)."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout_s: float = 2.0,
        connect_timeout_s: float | None = None,
        read_protocol: str = "text",
    ):
        if read_protocol not in ("text", "meta"):
            raise ValueError(f"read_protocol must be 'text' or 'meta', got {read_protocol!r}")
        self.host = host
        self.port = int(port)
        self.read_protocol = read_protocol
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = float(connect_timeout_s if connect_timeout_s is not None else timeout_s)
        self._sock: socket.socket | None = None
        self._buf = b""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> MemcacheClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None
        self._buf = b""

    # -- connection and framing -------------------------------------------------

    def _connect(self) -> socket.socket:
        if self._sock is None:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
            except TimeoutError as exc:
                raise MemcacheTimeout(f"{self.address}: connect timed out") from exc
            except OSError as exc:
                raise MemcacheConnectionError(f"{self.address}: {exc}") from exc
            sock.settimeout(self.timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            self._buf = b""
        return self._sock

    def _fill(self) -> None:
        if self._sock is None:
            # Only reached from a reader of _request, which connects first.
            raise MemcacheConnectionError(f"{self.address}: not connected")
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError as exc:
            raise MemcacheTimeout(f"{self.address}: no reply within {self.timeout_s}s") from exc
        except OSError as exc:
            raise MemcacheConnectionError(f"{self.address}: {exc}") from exc
        if not chunk:
            raise MemcacheConnectionError(f"{self.address}: connection closed by server")
        self._buf += chunk

    def _readline(self) -> bytes:
        while b"\r\n" not in self._buf:
            self._fill()
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def _readexact(self, size: int) -> bytes:
        while len(self._buf) < size:
            self._fill()
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def _request(self, payload: bytes, reader):
        """Send one request and parse its reply; drop the connection on any failure."""
        try:
            sock = self._connect()
            try:
                sock.sendall(payload)
            except TimeoutError as exc:
                raise MemcacheTimeout(f"{self.address}: send timed out") from exc
            except OSError as exc:
                raise MemcacheConnectionError(f"{self.address}: {exc}") from exc
            return reader()
        except MemcacheError:
            # A partial or unexpected reply may leave bytes in flight: start afresh next time.
            self.close()
            raise

    @staticmethod
    def _raise_for_error(line: bytes) -> None:
        if line == b"ERROR" or line.startswith((b"CLIENT_ERROR", b"SERVER_ERROR")):
            raise MemcacheError(line.decode(errors="replace"))

    # -- commands ---------------------------------------------------------------

    def _read_values(self, with_cas: bool) -> dict[str, tuple[bytes, int, int | None]]:
        found: dict[str, tuple[bytes, int, int | None]] = {}
        while True:
            line = self._readline()
            if line == b"END":
                return found
            self._raise_for_error(line)
            parts = line.split()
            if len(parts) < 4 or parts[0] != b"VALUE":
                raise MemcacheError(f"unexpected reply to get: {line[:80]!r}")
            size = int(parts[3])
            data = self._readexact(size + 2)[:-2]
            cas = int(parts[4]) if with_cas and len(parts) > 4 else None
            found[parts[1].decode()] = (data, int(parts[2]), cas)

    def _meta_get_many(
        self, keys: list[str], with_cas: bool, with_ttl: bool = False
    ) -> dict[str, tuple[bytes, int, int | None]]:
        """Pipelined `mg KEY v f [c] [t] O<n>`: one reply per key, in order; the opaque
        token O<n> proves each reply belongs to the n-th key (replies carry no key).
        With `with_ttl` the third item is the seconds left to live (-1: none) instead of CAS."""
        wanted = b"v f" + (b" c" if with_cas else b"") + (b" t" if with_ttl else b"")
        payload = b"".join(b"mg %s %s O%d\r\n" % (check_key(k), wanted, n) for n, k in enumerate(keys))

        def read_replies() -> dict[str, tuple[bytes, int, int | None]]:
            found: dict[str, tuple[bytes, int, int | None]] = {}
            for n, key in enumerate(keys):
                line = self._readline()
                self._raise_for_error(line)
                parts = line.split()
                if not parts or parts[0] not in (b"VA", b"EN"):
                    raise MemcacheError(f"unexpected reply to mg: {line[:80]!r}")
                tokens = {t[:1]: t[1:] for t in parts[2 if parts[0] == b"VA" else 1 :]}
                if tokens.get(b"O", b"%d" % n) != b"%d" % n:
                    raise MemcacheError(f"reply out of order: {line[:80]!r} for key #{n}")
                if parts[0] == b"EN":
                    continue
                data = self._readexact(int(parts[1]) + 2)[:-2]
                third = b"t" if with_ttl else b"c"
                found[key] = (
                    data,
                    int(tokens.get(b"f") or 0),
                    int(tokens[third]) if third in tokens else None,
                )
            return found

        return self._request(payload, read_replies)

    def _get_values(self, keys: list[str], with_cas: bool) -> dict[str, tuple[bytes, int, int | None]]:
        if self.read_protocol == "meta":
            return self._meta_get_many(keys, with_cas)
        command = b"gets " if with_cas else b"get "
        raw = b" ".join(check_key(k) for k in keys)
        return self._request(command + raw + b"\r\n", lambda: self._read_values(with_cas))

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        """Values of the keys that hit; misses are absent from the result."""
        if not keys:
            return {}
        return {k: v[0] for k, v in self._get_values(keys, False).items()}

    def get_many_with_ttl(self, keys: list[str]) -> dict[str, tuple[bytes, int, int]]:
        """(value, client flags, seconds left to live, -1 for none) of the keys that hit;
        meta protocol, straight to a memcached server."""
        found = self._meta_get_many(keys, False, with_ttl=True) if keys else {}
        return {k: (v[0], v[1], -1 if v[2] is None else v[2]) for k, v in found.items()}

    def get(self, key: str) -> bytes | None:
        return self.get_many([key]).get(key)

    def gets(self, key: str) -> tuple[bytes, int] | None:
        found = self._get_values([key], True)
        if key not in found:
            return None
        data, _flags, cas = found[key]
        return data, int(cas or 0)

    def set(self, key: str, value: bytes | str, exptime: int = 0, flags: int = 0) -> bool:
        """True when the server answered STORED."""
        data = value.encode() if isinstance(value, str) else value
        head = b"set %s %d %d %d\r\n" % (check_key(key), flags, int(exptime), len(data))
        line = self._request(head + data + b"\r\n", self._readline)
        self._raise_for_error(line)
        return line == b"STORED"

    def delete(self, key: str) -> bool:
        """True when an item was deleted, False when there was none (NOT_FOUND)."""
        line = self._request(b"delete " + check_key(key) + b"\r\n", self._readline)
        self._raise_for_error(line)
        if line not in (b"DELETED", b"NOT_FOUND"):
            raise MemcacheError(f"unexpected reply to delete: {line[:80]!r}")
        return line == b"DELETED"

    def flush_all(self) -> None:
        line = self._request(b"flush_all\r\n", self._readline)
        self._raise_for_error(line)
        if line != b"OK":
            raise MemcacheError(f"unexpected reply to flush_all: {line[:80]!r}")

    def refresh_certs(self) -> None:
        """Make memcached load its TLS certificate, key and CA files again (`refresh_certs`).

        memcached answers OK, or the OpenSSL error of the file it could not load (memcached's
        proto_text.c, process_refresh_certs_command); that error is raised as it was given.
        """
        line = self._request(b"refresh_certs\r\n", self._readline)
        if line != b"OK":
            raise MemcacheError(line.decode(errors="replace")[:400])

    def version(self) -> str:
        line = self._request(b"version\r\n", self._readline)
        self._raise_for_error(line)
        if not line.startswith(b"VERSION "):
            raise MemcacheError(f"unexpected reply to version: {line[:80]!r}")
        return line[len(b"VERSION ") :].decode(errors="replace")

    def stats(self, group: str | None = None) -> dict[str, str]:
        payload = b"stats\r\n" if not group else b"stats " + group.encode() + b"\r\n"

        def read_stats() -> dict[str, str]:
            result: dict[str, str] = {}
            while True:
                line = self._readline()
                if line == b"END":
                    return result
                self._raise_for_error(line)
                parts = line.decode(errors="replace").split(" ", 2)
                if len(parts) == 3 and parts[0] == "STAT":
                    result[parts[1]] = parts[2]

        return self._request(payload, read_stats)


def parse_server(spec: str | dict, default_port: int = 11211) -> tuple[str, int]:
    """'host:port', 'host', '[v6]:port' or a topology dict {address, port} → (host, port)."""
    if isinstance(spec, dict):
        host = spec.get("address") or spec.get("host")
        return str(host), int(spec.get("port") or default_port)
    text = str(spec)
    if text.startswith("["):
        host, _bracket, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, default_port
