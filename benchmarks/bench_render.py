"""Render time: the renderers alone (issue 3's figure) and playbooks/render.yml end to end.

    .venv/bin/python benchmarks/bench_render.py                  # both parts
    .venv/bin/python benchmarks/bench_render.py --playbook-only --routers 40 400

Part 1 builds the model of a two-datacentre fleet (18 shards, 3 gutter, 4 routers, 4 + 4
proxies each) and renders every router's config with both engines; prints the median
of several runs.

Part 2 copies inventories/eqiad into a temporary directory with its `eqiad_routers`
group enlarged to N app servers (addresses in 10.64.0.0/16; nothing is contacted),
times `ansible-playbook -i TMP playbooks/render.yml -e render_dir=TMP/render` for each
N, and checks that the files written equal the renderers' output (a sanity check; the
tests are in tests/). Run from the repository root so ansible.cfg is used.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
# The checkout is the collection mcfleet.fleet under .collections (as in pytest.ini).
sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.mcfleet.fleet.plugins.module_utils import (  # noqa: E402
    render_mcrouter,
    render_memcached_proxy,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology  # noqa: E402

POOLS = {
    "memcached_main": 18,
    "memcached_gutter": 3,
    "routers": 4,
    "proxies_primary": 4,
    "proxies_secondary": 4,
}
ROUTES_LUA = REPO / "roles" / "memcached_proxy" / "files" / render_memcached_proxy.LIBRARY_NAME


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


def bench_renderers(runs=20):
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


def enlarged_inventory(directory, routers):
    """inventories/eqiad copied to `directory` with `routers` app servers; their names."""
    shutil.copytree(REPO / "inventories" / "eqiad", directory)
    hosts_file = directory / "hosts.yml"
    inventory = yaml.safe_load(hosts_file.read_text())
    names = [f"mw{1001 + index}.eqiad.wmnet" for index in range(routers)]
    inventory["all"]["children"]["eqiad"]["children"]["eqiad_routers"]["hosts"] = {
        name: {"mcfleet_address": f"10.64.{index // 250}.{index % 250 + 1}"}
        for index, name in enumerate(names)
    }
    hosts_file.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return names


def inventory_model(inventory):
    """The model render.yml sees: groups and hostvars loaded by Ansible itself."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[str(inventory)])
    variables = VariableManager(loader=loader, inventory=manager)
    groups = {name: [host.name for host in group.get_hosts()] for name, group in manager.groups.items()}
    hostvars = {host.name: variables.get_vars(host=host) for host in manager.get_hosts()}
    return build_topology(groups, hostvars)


def expected_files(model):
    """{relative path: text} the renderers produce for every router and proxy."""
    files = {}
    for host, router in model["routers"].items():
        if router["engine"] == "mcrouter":
            files[f"{host}/{render_mcrouter.CONFIG_NAME}"] = render_mcrouter.render_config_text(model, host)
        else:
            files[f"{host}/{render_memcached_proxy.CONFIG_NAME}"] = render_memcached_proxy.render_config_text(
                model, host
            )
            files[f"{host}/{render_memcached_proxy.LIBRARY_NAME}"] = ROUTES_LUA.read_text()
    return files


def bench_playbook(routers, keep=False):
    work = Path(tempfile.mkdtemp(prefix=f"bench-render-{routers}-"))
    try:
        inventory = work / "inventory"
        enlarged_inventory(inventory, routers)
        output = work / "render"
        command = [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(inventory),
            str(REPO / "playbooks" / "render.yml"),
            "-e",
            f"render_dir={output}",
        ]
        environment = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
        start = time.perf_counter()
        result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            output_tail = result.stdout[-4000:] + result.stderr[-4000:]
            sys.exit(f"render.yml failed for {routers} routers:\n{output_tail}")
        written = {str(p.relative_to(output)): p.read_text() for p in output.rglob("*") if p.is_file()}
        expected = expected_files(inventory_model(inventory))
        same = written == expected
        routers_and_proxies = len({path.split("/")[0] for path in expected})
        print(
            f"render.yml, eqiad with {routers} app servers ({routers_and_proxies} routers + proxies, "
            f"{len(written)} files): {elapsed:.1f} s end to end, "
            f"{elapsed / routers_and_proxies * 1000:.0f} ms per host; "
            f"files {'equal' if same else 'DIFFER FROM'} the renderers' output"
        )
        if not same:
            missing = sorted(set(expected) - set(written))[:5]
            extra = sorted(set(written) - set(expected))[:5]
            different = sorted(p for p in set(expected) & set(written) if expected[p] != written[p])[:5]
            sys.exit(f"missing {missing}, unexpected {extra}, different {different}")
        return elapsed
    finally:
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", type=int, nargs="+", default=[40, 400], help="app servers per run")
    parser.add_argument("--playbook-only", action="store_true", help="skip the renderers-only figure")
    parser.add_argument("--keep", action="store_true", help="keep the temporary inventories and output")
    arguments = parser.parse_args()
    if not arguments.playbook_only:
        bench_renderers()
    for routers in arguments.routers:
        bench_playbook(routers, arguments.keep)


if __name__ == "__main__":
    main()
