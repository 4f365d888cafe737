"""Every inventory parses, has the fleet's shape, and every playbook passes a syntax check on it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import INVENTORIES, REPO, inventory_data

BIN = Path(sys.executable).parent
PLAYBOOKS = sorted(path.name for path in (REPO / "playbooks").glob("*.yml"))
ENV = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}

POOL_GROUPS = ("memcached_main", "memcached_gutter", "routers", "proxies_primary", "proxies_secondary")


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_inventory_graph_has_every_pool_per_datacentre(inventory):
    listing = subprocess.run(
        [BIN / "ansible-inventory", "-i", REPO / "inventories" / inventory, "--list"],
        capture_output=True,
        text=True,
        check=True,
        env=ENV,
        cwd=REPO,
    )
    assert json.loads(listing.stdout)["_meta"]["hostvars"]
    groups, hostvars = inventory_data(inventory)
    datacentres = {hostvars[host]["mcfleet_datacentre"] for host in groups["all"]}
    assert datacentres, f"{inventory}: no host names its datacentre"
    for datacentre in sorted(datacentres):
        # Every datacentre has each pool; how many hosts is the inventory's business.
        empty = [
            group
            for group in POOL_GROUPS
            if not any(hostvars[host]["mcfleet_datacentre"] == datacentre for host in groups.get(group, []))
        ]
        assert not empty, f"{inventory}/{datacentre}: no hosts in {empty}"


@pytest.mark.parametrize("inventory", INVENTORIES)
@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_syntax_on_inventory(inventory, playbook):
    result = subprocess.run(
        [
            BIN / "ansible-playbook",
            "--syntax-check",
            "-i",
            REPO / "inventories" / inventory,
            REPO / "playbooks" / playbook,
        ],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
