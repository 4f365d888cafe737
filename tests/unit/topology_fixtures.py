"""Inventory data for topology and renderer tests, loaded by Ansible itself (no hand-made copies)."""

from functools import cache
from pathlib import Path

from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.manager import VariableManager

REPO = Path(__file__).resolve().parents[2]
INVENTORIES = ("lab", "eqiad", "codfw")


@cache
def _inventory(name):
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(REPO / "inventories" / name)])
    variables = VariableManager(loader=loader, inventory=inventory)
    groups = {name: [host.name for host in group.get_hosts()] for name, group in inventory.groups.items()}
    hostvars = {host.name: variables.get_vars(host=host) for host in inventory.get_hosts()}
    return groups, hostvars


def inventory_data(name):
    """(groups, hostvars) of inventories/<name>, as copies a test may change."""
    groups, hostvars = _inventory(name)
    return {g: list(hs) for g, hs in groups.items()}, {h: dict(v) for h, v in hostvars.items()}


def host_vars(datacentre, address, **extra):
    return {"mcfleet_datacentre": datacentre, "mcfleet_address": address, **extra}


def small_fleet(**settings):
    """A two-datacentre fleet in plain dicts: 3 shards + 1 gutter + 1 router per datacentre."""
    groups = {"memcached_main": [], "memcached_gutter": [], "routers": [], "proxies_primary": []}
    hostvars = {}
    for number, dc in ((1, "eqiad"), (2, "codfw")):
        for shard in (1, 2, 3):
            host = f"mc{number}00{shard}"
            groups["memcached_main"].append(host)
            hostvars[host] = host_vars(dc, f"10.0.{number}.{shard}")
        groups["memcached_gutter"].append(f"mc-gp{number}001")
        hostvars[f"mc-gp{number}001"] = host_vars(dc, f"10.0.{number}.10")
        groups["routers"].append(f"mw{number}001")
        hostvars[f"mw{number}001"] = host_vars(dc, f"10.0.{number}.20")
        groups["proxies_primary"].append(f"mwproxy{number}001")
        hostvars[f"mwproxy{number}001"] = host_vars(dc, f"10.0.{number}.30")
    for host, hvars in hostvars.items():
        # Cross-datacentre TLS is on by default: every router and proxy has its files.
        hvars.update(
            mcfleet_tls_ca_file="/srv/pki/ca.pem",
            mcfleet_tls_cert_file=f"/srv/pki/{host}.pem",
            mcfleet_tls_key_file=f"/srv/pki/{host}.key",
        )
        hvars.update(settings)
    return groups, hostvars
