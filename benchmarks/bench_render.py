"""Render time for two datacentres of 18 shards (issue 3's figure).

    .venv/bin/python benchmarks/bench_render.py

Builds the model of a two-datacentre fleet (18 shards, 3 gutter, 4 routers, 4 + 4
proxies each) and renders every router's config with both engines; prints the median
of several runs.
"""

import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "plugins"))
import ansible.module_utils  # noqa: E402

ansible.module_utils.__path__.append(str(REPO / "plugins" / "module_utils"))
from ansible.module_utils import render_mcrouter, render_memcached_proxy  # noqa: E402
from ansible.module_utils.topology import build_topology  # noqa: E402

POOLS = {
    "memcached_main": 18,
    "memcached_gutter": 3,
    "routers": 4,
    "proxies_primary": 4,
    "proxies_secondary": 4,
}


def two_datacentres():
    groups, hostvars = {group: [] for group in POOLS}, {}
    for number, datacentre in ((1, "eqiad"), (2, "codfw")):
        address = 1
        for group, count in POOLS.items():
            for index in range(count):
                host = f"{group}-{datacentre}-{index}"
                groups[group].append(host)
                hostvars[host] = {
                    "mcfleet_datacentre": datacentre,
                    "mcfleet_address": f"10.{number}.0.{address}",
                }
                address += 1
    return groups, hostvars


def render_everything(groups, hostvars):
    model = build_topology(groups, hostvars)
    for host in model["routers"]:
        render_mcrouter.render_config_text(model, host)
        render_memcached_proxy.render_config_text(model, host)
    return len(model["routers"])


def main(runs=20):
    groups, hostvars = two_datacentres()
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        routers = render_everything(groups, hostvars)
        timings.append(time.perf_counter() - start)
    median = statistics.median(timings)
    print(
        f"model + {routers} routers x 2 engines, 2 datacentres x 18 shards: "
        f"median {median * 1000:.1f} ms, {median / routers / 2 * 1000:.2f} ms per config ({runs} runs)"
    )


if __name__ == "__main__":
    main()
