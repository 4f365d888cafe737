"""What moves: place 1,000,000 keys with and without blocked shards, for both engines.

    .venv/bin/python benchmarks/bench_explainer.py                 # 1,000,000 keys
    .venv/bin/python benchmarks/bench_explainer.py --keys 100000 --repeat 3

The fleet is inventories/eqiad's model (18 shards, 3 gutter servers), once with mcrouter
(Ch3) and once with memcached's proxy (XXH3 + jump hash); two shards are blocked. Goal:
under 10 s per engine. Prints the median of the runs, and a per-key (pure Python)
placement of a sample for comparison, scaled to the same number of keys.

How it gets there (route_hashing.py): keys are grouped by length and MurmurHash64A runs on
numpy uint64 columns, furc_hash's decision tree runs for every key in lock step (only the
keys still undecided take the next step), jump hash likewise; XXH3 comes from the xxhash
package per key (a C call). Each pool size is hashed once per placement.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The checkout is the collection mcfleet.fleet under .collections (as in pytest.ini).
sys.path.insert(0, str(REPO / ".collections"))

from ansible_collections.mcfleet.fleet.plugins.module_utils import route_explain, route_hashing  # noqa: E402
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology  # noqa: E402
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import inventory_data  # noqa: E402

SAMPLE = 20000


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    groups, hostvars = inventory_data("eqiad")
    for engine in route_explain.ENGINES:
        for host in hostvars.values():
            host["mcfleet_router_engine"] = engine
        model = build_topology(groups, hostvars)
        router_host = model["datacentres"]["eqiad"]["routers"][0]["host"]
        router = route_explain.router_from_model(model, router_host)
        blocked = [entry["host"] for entry in model["datacentres"]["eqiad"]["main"][:2]]
        timings, moves = [], None
        for _ in range(options.repeat):
            started = time.perf_counter()
            moves = route_explain.what_moves(router, blocked, options.keys)
            timings.append(time.perf_counter() - started)
        keys = route_explain.sample_keys(SAMPLE)
        started = time.perf_counter()
        for key in keys:
            for size in (18, 3):
                route_hashing.POOL_INDEX[engine](key, size)
        per_key = (time.perf_counter() - started) / SAMPLE * options.keys
        print(
            f"{engine:16} what_moves, {options.keys:,} keys, blocked {', '.join(blocked)}: "
            f"median {statistics.median(timings):.2f} s over {options.repeat} runs "
            f"(min {min(timings):.2f}, max {max(timings):.2f}); "
            f"moved {moves['moved']:,} ({moves['moved_fraction']:.2%}) to "
            + ", ".join(f"{server} {entry['count']:,}" for server, entry in moves["moved_to"].items())
        )
        print(f"{'':16} per-key pure Python placement, extrapolated: {per_key:.1f} s")


if __name__ == "__main__":
    main()
