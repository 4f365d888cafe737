"""Canary verification throughput against a plain pymemcache multi-get (issue 4 figure).

The verifier's read side for N canaries is: one multi-get through the router, one direct
multi-get per main shard and per gutter server (stripped keys), then classifying every
value. The baseline issues exactly the same multi-gets with pymemcache (`get_many`, in
batches of the same size) and does nothing with the values. Ratio = verifier keys/s over
baseline keys/s, so 1.0 means verification costs no more than the raw reads.

Also measured: the stdlib client's `get_many` against pymemcache's on one memcached.

    .venv/bin/python benchmarks/bench_verify.py                 # loopback: starts 3 shards,
                                                               # 1 gutter and the test router
    .venv/bin/python benchmarks/bench_verify.py --router 10.89.213.15:11213 \\
        --shard mc1001=10.89.213.11:11211 --shard mc1002=10.89.213.12:11211 \\
        --shard mc1003=10.89.213.13:11211 --gutter mc-gp1001=10.89.213.14:11211

Bounded: at most 20,000 canaries, 20 rounds; loopback or the lab subnet only. Prints JSON.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(REPO / "tests"))

import ansible.module_utils  # noqa: E402

ansible.module_utils.__path__.append(str(REPO / "plugins" / "module_utils"))

from ansible.module_utils.failover_verify import BATCH, FailoverVerifier  # noqa: E402
from ansible.module_utils.memcache_client import MemcacheClient  # noqa: E402
from pymemcache.client.base import Client as PyMemcache  # noqa: E402

ALLOWED = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "10.89.213.0/24")]


def endpoint(spec: str) -> dict:
    name, _, address = spec.rpartition("=")
    host, _, port = address.rpartition(":")
    if not any(ipaddress.ip_address(host) in net for net in ALLOWED):
        raise SystemExit(f"bench_verify: {host} is neither loopback nor the lab subnet")
    return {"host": name or host, "address": host, "port": int(port)}


def batched_get_many(client, keys: list[str]) -> int:
    found = 0
    for i in range(0, len(keys), BATCH):
        found += len(client.get_many(keys[i : i + BATCH]))
    return found


def measure(fn, rounds: int) -> float:
    """Best of `rounds` wall times (least disturbed by the other processes on 2 cores)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--canaries", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prefix", default="/eqiad/mw/")
    parser.add_argument("--router")
    parser.add_argument("--shard", action="append", default=[])
    parser.add_argument("--gutter", action="append", default=[])
    args = parser.parse_args()
    if not 0 < args.canaries <= 20_000 or not 0 < args.rounds <= 20:
        parser.error("--canaries must be in 1..20000 and --rounds in 1..20")

    fleet = None
    if args.router:
        topo = {
            "router": endpoint(args.router),
            "shards": [endpoint(s) for s in args.shard],
            "gutter": [endpoint(g) for g in args.gutter],
            "route_prefix": args.prefix,
        }
        where = "lab"
    else:
        from failover_fixtures import Fleet

        fleet = Fleet()
        topo = fleet.topology()
        where = "loopback (test failover router)"
    try:
        verifier = FailoverVerifier(**topo)
        _, state = verifier.before(canaries=args.canaries)
        canaries = state["canaries"]
        stripped = [c["key"] for c in canaries]
        routed = [args.prefix + k for k in stripped]

        def verify_reads() -> None:
            through_router, _ = verifier._router_get_many(stripped)
            for server in verifier.shards + verifier.gutter:
                server.get_many(stripped)
            lost = sum(verifier._is_lost(c, through_router.get(c["key"])) for c in canaries)
            assert lost == 0, lost

        py_router = PyMemcache((topo["router"]["address"], topo["router"]["port"]))
        py_direct = [PyMemcache((s["address"], s["port"])) for s in topo["shards"] + topo["gutter"]]

        def baseline_reads() -> None:
            batched_get_many(py_router, routed)
            for client in py_direct:
                batched_get_many(client, stripped)

        verify_s = measure(verify_reads, args.rounds)
        baseline_s = measure(baseline_reads, args.rounds)

        shard0 = topo["shards"][0]
        mine = [c["key"] for c in canaries if c["home"] == shard0["host"]]
        ours = MemcacheClient(shard0["address"], shard0["port"])
        theirs = PyMemcache((shard0["address"], shard0["port"]))
        ours_s = measure(lambda: batched_get_many(ours, mine * 10), args.rounds)
        theirs_s = measure(lambda: batched_get_many(theirs, mine * 10), args.rounds)

        for client in [py_router, *py_direct, theirs]:
            client.close()
        ours.close()
        # Leave nothing behind in a lab: delete the canaries through the router.
        for key in routed:
            verifier.router.client.delete(key)
        verifier.close()
    finally:
        if fleet:
            fleet.close()

    result = {
        "where": where,
        "canaries": args.canaries,
        "rounds": args.rounds,
        "verify_read_s": round(verify_s, 4),
        "verify_keys_per_s": round(args.canaries / verify_s),
        "pymemcache_get_many_s": round(baseline_s, 4),
        "pymemcache_keys_per_s": round(args.canaries / baseline_s),
        "ratio_verify_over_pymemcache": round(baseline_s / verify_s, 3),
        "client_get_many_keys_per_s": round(len(mine) * 10 / ours_s),
        "pymemcache_client_keys_per_s": round(len(mine) * 10 / theirs_s),
        "ratio_client_over_pymemcache": round(theirs_s / ours_s, 3),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
