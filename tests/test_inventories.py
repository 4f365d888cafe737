"""Every inventory parses, has the fleet's shape, and every playbook passes a syntax check on it."""

import json
import os
import subprocess

import pytest
from ansible_collections.mcfleet.fleet.tests.topology_fixtures import INVENTORIES, REPO, inventory_data

BIN = REPO / ".venv" / "bin"
PLAYBOOKS = sorted(path.name for path in (REPO / "playbooks").glob("*.yml"))
ENV = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}

# (main shards, gutter servers, app servers, primary proxies, secondary proxies) per datacentre.
EXPECTED_SHAPE = {
    "lab": {"eqiad": (3, 1, 1, 1, 1), "codfw": (3, 1, 1, 1, 1)},
    "eqiad": {"eqiad": (18, 3, 4, 4, 4)},
    "codfw": {"codfw": (18, 3, 4, 4, 4)},
}
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
    for datacentre, expected in EXPECTED_SHAPE[inventory].items():
        counted = tuple(
            sum(1 for host in groups[group] if hostvars[host]["mcfleet_datacentre"] == datacentre)
            for group in POOL_GROUPS
        )
        assert counted == expected, (
            f"{inventory}/{datacentre}: {dict(zip(POOL_GROUPS, counted, strict=True))}"
        )


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
    )
    assert result.returncode == 0, result.stderr[-2000:]
