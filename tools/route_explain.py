"""Which server holds a key, and what moves when shards are out, without a running router.

    .venv/bin/python tools/route_explain.py -i inventories/lab --router mw1001 get /eqiad/mw/user:42
    .venv/bin/python tools/route_explain.py -i inventories/lab --router mw1001 --blocked mc1001 \\
        get /eqiad/mw/user:42
    .venv/bin/python tools/route_explain.py --config /tmp/render/mw1001/proxy.lua set /*/mw-wan/purge:1
    .venv/bin/python tools/route_explain.py -i inventories/eqiad --router mw1001.eqiad.wmnet \\
        --blocked mc1019.eqiad.wmnet --what-moves 100000

The model is built from the inventory as playbooks/topology.yml builds it; --config reads
one rendered router configuration instead (mcrouter config.json or the proxy's proxy.lua).
Exit status 2 on bad input, with a message naming the field and the value.
"""

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The checkout is the collection mcfleet.fleet under .collections (as in pytest.ini).
sys.path.insert(0, str(REPO / ".collections"))

from ansible_collections.mcfleet.fleet.plugins.module_utils import (  # noqa: E402
    route_explain,
    route_hashing,
    topology,
)


def model_from_inventory(inventory):
    """The topology model of an inventory, read by Ansible's own inventory code."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[inventory])
    variables = VariableManager(loader=loader, inventory=manager)
    groups = {name: [host.name for host in group.get_hosts()] for name, group in manager.groups.items()}
    hostvars = {host.name: variables.get_vars(host=host) for host in manager.get_hosts()}
    return topology.build_topology(groups, hostvars)


def arguments(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-i", "--inventory", help="inventory to build the topology model from")
    source.add_argument("--config", help="a rendered router configuration (config.json or proxy.lua)")
    parser.add_argument("--router", help="the router or proxy host of the inventory")
    parser.add_argument("--engine", choices=route_explain.ENGINES, help="engine of --config (guessed)")
    parser.add_argument("--datacentre", help="datacentre of an mcrouter --config (read from it)")
    parser.add_argument("--blocked", action="append", default=[], help="a failing server (repeat)")
    parser.add_argument("--what-moves", type=int, metavar="N", help="count where N synthetic keys go")
    parser.add_argument("--prefix", help="routing prefix of the keys --what-moves counts (/<dc>/mw/)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("operation", nargs="?", default="get", help="memcached command (get, set, delete...)")
    parser.add_argument("key", nargs="?", help="the key, with its routing prefix")
    options = parser.parse_args(argv)
    if options.inventory and not options.router:
        parser.error("--router: required with --inventory (the app server or proxy whose routes to follow)")
    if options.key is None and options.what_moves is None:
        parser.error("key: give a key to explain, or --what-moves N")
    return options


def main(argv=None):
    options = arguments(argv)
    try:
        model = None
        if options.inventory:
            model = model_from_inventory(options.inventory)
            router = route_explain.router_from_model(model, options.router)
        else:
            try:
                text = Path(options.config).read_text(encoding="utf-8")
            except OSError as error:
                raise route_explain.ExplainError(
                    f"config={options.config}: cannot read it ({error.strerror})"
                ) from None
            router = route_explain.load_router(text, options.config, options.engine, options.datacentre)
        output = {}
        if options.key is not None:
            output["explanation"] = route_explain.explain(
                router, options.operation, options.key, options.blocked, model
            )
            output["destinations"] = route_explain.final_destinations(output["explanation"])
        if options.what_moves is not None:
            output["what_moves"] = route_explain.what_moves(
                router, options.blocked, options.what_moves, options.operation, options.prefix
            )
    except (route_explain.ExplainError, route_hashing.HashingError, topology.TopologyError) as error:
        print(f"route_explain: {error}", file=sys.stderr)
        return 2
    if options.json:
        print(json.dumps(output, indent=2, sort_keys=True))
        return 0
    if "explanation" in output:
        print("\n".join(route_explain.describe(output["explanation"])))
    if "what_moves" in output:
        print(describe_moves(output["what_moves"]))
    return 0


def describe_moves(moves):
    lines = [
        f"{moves['keys']} keys under {moves['route_prefix']}, "
        f"blocked: {', '.join(moves['blocked']) or 'none'}",
        f"moved: {moves['moved']} ({moves['moved_fraction']:.2%}); failing (no server): {moves['failed']}",
        "moved to:",
    ]
    lines += [f"  {server:30} {e['count']:>9} {e['fraction']:.2%}" for server, e in moves["moved_to"].items()]
    lines.append("every key now on:")
    lines += [
        f"  {server:30} {e['count']:>9} {e['fraction']:.2%}" for server, e in moves["destinations"].items()
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
