"""Probe cross-datacentre replication and the TLS leg from the controller (molecule/proxies).

Every figure is read from the real servers: keys are written through eqiad's router with
the broadcast prefix /*/mw-wan/, then looked up directly on the shards of both datacentres
(without the prefix: that is how the routers store them), and through a codfw proxy (the
shard codfw's own routing picks). Prints one JSON document; verify.yml asserts on it.

    proxy_probe.py replicate --router H:P --local H:P,... --remote H:P,... --reader H:P --count N
    proxy_probe.py mixed     --router H:P --remote H:P,... --duration S --wan-every K
    proxy_probe.py tls       --proxy ADDRESS --plain-port P --tls-port P --ca PATH --cert PATH
                             --key PATH --count N
"""

import argparse
import datetime
import json
import os
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The collection's own client and replication check, from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import (
    MemcacheClient,
    MemcacheError,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.replication import (
    check_replication,
    holders,
    quantile,
)

TIMEOUT_S = 2.0
BROADCAST = "/*/mw-wan/"


def endpoints(text):
    return [(host, int(port)) for host, port in (item.rsplit(":", 1) for item in text.split(",") if item)]


def clients(spec, read_protocol="text"):
    return [
        MemcacheClient(host, port, timeout_s=TIMEOUT_S, read_protocol=read_protocol)
        for host, port in endpoints(spec)
    ]


def replicate(args):
    """Write and delete keys one at a time; time each until the other datacentre shows it."""
    (router,) = clients(args.router)
    (reader,) = clients(args.reader, "meta")
    result = check_replication(
        router,
        clients(args.remote),
        args.count,
        args.deadline_s,
        tag=f"{args.phase}-{os.getpid()}-{int(time.time())}",
        local_shards=clients(args.local),
        reader=reader,
    )
    return {"phase": args.phase, **result}


def mixed(args):
    """The router's local traffic (set + meta get of /eqiad/mw/ keys) for a while, with a
    replicated write every `wan_every` requests; then count the replicated writes that
    reached the other datacentre."""
    router = MemcacheClient(*endpoints(args.router)[0], timeout_s=TIMEOUT_S, read_protocol="meta")
    remote = clients(args.remote)
    tag = f"{args.phase}-{os.getpid()}-{int(time.time())}"
    latencies, errors, wan_keys, requests = [], [], [], 0
    per_second = {}
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        key = f"{args.route_prefix}{tag}-{requests % 500}"
        for operation in ("set", "get"):
            start = time.monotonic()
            try:
                if operation == "set":
                    if not router.set(key, "x" * 100):
                        errors.append(f"set {key}: not stored")
                elif router.get(key) is None:
                    errors.append(f"get {key}: miss")
            except MemcacheError as error:
                errors.append(f"{operation} {key}: {error}")
                router.close()
            latencies.append((time.monotonic() - start) * 1000)
            per_second.setdefault(int(start), []).append(latencies[-1])
            requests += 1
        if requests % args.wan_every == 0:
            wan_key = f"{tag}-wan-{len(wan_keys)}"
            try:
                router.set(BROADCAST + wan_key, "w")
                wan_keys.append(wan_key)
            except MemcacheError as error:
                errors.append(f"set {BROADCAST}{wan_key}: {error}")
    time.sleep(args.settle_s)
    arrived = sum(1 for key in wan_keys if holders(remote, key))
    return {
        "phase": args.phase,
        "requests": requests,
        "client_errors": len(errors),
        "errors": errors[:10],
        "latency_ms": {"p50": quantile(latencies, 0.5), "p99": quantile(latencies, 0.99)},
        # The median of per-second p99s: one scheduling stall on a shared machine moves one
        # second's p99, not this figure.
        "steady_p99_ms": sorted(quantile(values, 0.99) for values in per_second.values())[
            len(per_second) // 2
        ],
        "replicated_writes": len(wan_keys),
        "replicated_arrived": arrived,
        "replicated_lost": len(wan_keys) - arrived,
    }


def _round_trips(sock, count):
    """Per-request milliseconds of `count` version round trips on an open connection."""
    timings = []
    for _ in range(count):
        start = time.monotonic()
        sock.sendall(b"version\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("connection closed")
            reply += chunk
        if not reply.startswith(b"VERSION"):
            raise ConnectionError(f"unexpected reply {reply[:40]!r}")
        timings.append((time.monotonic() - start) * 1000)
    return timings


def _foreign_client_certificate(folder):
    """A client certificate (clientAuth) from a CA made here, not the fleet's: (cert, key) paths."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the fleet's CA")])
    client_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mw1001")])

    client = (
        x509.CertificateBuilder()
        .subject_name(client_name)
        .issuer_name(ca_name)
        .public_key(client_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert, key = Path(folder, "cert.pem"), Path(folder, "key.pem")
    cert.write_bytes(client.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        client_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert), str(key)


def _answers(context, args):
    """Whether the TLS port answers `version` for a client with this context. The proxy checks
    the client's certificate after the client's side of the handshake (TLS 1.3), so a refusal
    shows on the first read, as an alert, a reset or a closed connection."""
    raw = socket.create_connection((args.proxy, args.tls_port), timeout=TIMEOUT_S)
    try:
        with context.wrap_socket(raw, server_hostname=args.proxy) as sock:
            sock.sendall(b"version\r\n")
            return sock.recv(4096).startswith(b"VERSION")
    except (ssl.SSLError, ConnectionError, TimeoutError, OSError):
        return False
    finally:
        raw.close()


def tls(args):
    """The proxy's TLS listener: verified against the CA and its address, a client certificate
    of the fleet's CA required (none, or another CA's, is refused), plaintext refused, and what
    TLS adds per request and per new connection compared with its plain port."""
    anonymous = ssl.create_default_context(cafile=args.ca)
    context = ssl.create_default_context(cafile=args.ca)
    context.load_cert_chain(args.cert, args.key)
    result = {"answers_without_certificate": _answers(anonymous, args)}
    with tempfile.TemporaryDirectory() as folder:
        foreign = ssl.create_default_context(cafile=args.ca)
        foreign.load_cert_chain(*_foreign_client_certificate(folder))
        result["answers_another_cas_certificate"] = _answers(foreign, args)
    result["answers_the_fleets_certificate"] = _answers(context, args)
    # Check that the certificate names the proxy's address (Python matches IP subjectAltNames).
    start = time.monotonic()
    raw = socket.create_connection((args.proxy, args.tls_port), timeout=TIMEOUT_S)
    tls_sock = context.wrap_socket(raw, server_hostname=args.proxy)
    result["handshake_ms"] = round((time.monotonic() - start) * 1000, 3)
    result["verified_peer"] = tls_sock.getpeercert().get("subject")
    result["tls_version"] = tls_sock.version()
    plain_sock = socket.create_connection((args.proxy, args.plain_port), timeout=TIMEOUT_S)
    timings = {"tls": [], "plain": []}
    # Interleaved rounds, so machine load affects both alike.
    for _ in range(10):
        timings["tls"] += _round_trips(tls_sock, args.count // 10)
        timings["plain"] += _round_trips(plain_sock, args.count // 10)
    for name, values in timings.items():
        result[f"{name}_ms"] = {"p50": quantile(values, 0.5), "p99": quantile(values, 0.99)}
    result["added_ms"] = {
        "p50": round(statistics.median(timings["tls"]) - statistics.median(timings["plain"]), 3),
        "p99": round(quantile(timings["tls"], 0.99) - quantile(timings["plain"], 0.99), 3),
    }
    # Plaintext on the TLS port gets no memcached answer.
    probe = socket.create_connection((args.proxy, args.tls_port), timeout=TIMEOUT_S)
    probe.sendall(b"version\r\n")
    try:
        reply = probe.recv(4096)
    except (TimeoutError, OSError):
        reply = b""
    result["plaintext_answered"] = reply.startswith(b"VERSION")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("replicate")
    rep.add_argument("--router", required=True)
    rep.add_argument("--local", required=True)
    rep.add_argument("--remote", required=True)
    rep.add_argument("--reader", required=True)
    rep.add_argument("--count", type=int, default=100)
    rep.add_argument("--deadline-s", type=float, default=3.0)
    rep.add_argument("--phase", default="replicate")
    mix = sub.add_parser("mixed")
    mix.add_argument("--router", required=True)
    mix.add_argument("--remote", required=True)
    mix.add_argument("--route-prefix", default="/eqiad/mw/")
    mix.add_argument("--duration", type=float, default=5.0)
    mix.add_argument("--wan-every", type=int, default=10)
    mix.add_argument("--settle-s", type=float, default=2.0)
    mix.add_argument("--phase", default="mixed")
    tl = sub.add_parser("tls")
    tl.add_argument("--proxy", required=True)
    tl.add_argument("--plain-port", type=int, required=True)
    tl.add_argument("--tls-port", type=int, required=True)
    tl.add_argument("--ca", required=True)
    tl.add_argument("--cert", required=True, help="a client certificate of the fleet's CA (a router's)")
    tl.add_argument("--key", required=True)
    tl.add_argument("--count", type=int, default=500)
    args = parser.parse_args()
    result = {"replicate": replicate, "mixed": mixed, "tls": tls}[args.command](args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
