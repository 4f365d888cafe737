"""playbooks/render.yml run for real: it writes the reviewed golden files, and refuses an
invalid topology before writing anything."""

import os
import subprocess
import sys
from pathlib import Path

from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import REPO

ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
GOLDEN = REPO / "tests" / "unit" / "golden"
ENV = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}


def run_playbook(inventory, playbook, *extra_args):
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(REPO / "playbooks" / playbook), *extra_args],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def render(inventory, render_dir):
    return run_playbook(inventory, "render.yml", "-e", f"render_dir={render_dir}")


def test_render_playbook_writes_the_golden_files(tmp_path):
    """Every router's config as reviewed, and next to each memcached_proxy config the route
    library that role ships."""
    result = render(REPO / "inventories" / "lab", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    written = {str(p.relative_to(tmp_path)): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    golden = GOLDEN / "lab"
    # The golden files also hold each router's command line and tunnels (the roles' side).
    expected = {
        str(p.relative_to(golden)): p.read_text()
        for p in golden.rglob("*")
        if p.is_file() and p.name in ("proxy.lua", "config.json")
    }
    library = REPO / "roles" / "memcached_proxy" / "files" / "routes.lua"
    for config in golden.glob("*/proxy.lua"):
        expected[f"{config.parent.name}/routes.lua"] = library.read_text()
    assert written == expected


def test_render_playbook_fails_on_invalid_topology(tmp_path):
    """render.yml exits non-zero with the one message, before writing anything."""
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text((REPO / "inventories" / "lab" / "hosts.yml").read_text())
    (inventory / "group_vars" / "all" / "topology.yml").write_text(
        "mcfleet_gutter_ttl_s: 0\nmcfleet_router_engine: nginx\nmcfleet_cross_dc_tls: false\n"
    )
    (inventory / "group_vars" / "eqiad.yml").write_text("mcfleet_datacentre: eqiad\n")
    (inventory / "group_vars" / "codfw.yml").write_text("mcfleet_datacentre: codfw\n")
    render_dir = tmp_path / "render"
    result = render(inventory, render_dir)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "invalid mcfleet topology (7 problems)" in output
    assert "mcfleet_gutter_ttl_s: 0 is out of range" in output
    assert "mwproxy2002: mcfleet_router_engine 'nginx'" in output
    assert not render_dir.exists()


def test_shadow_lru_without_spare_servers_is_refused_on_a_production_inventory():
    """shadow_lru.yml builds lab containers only where the inventory is the lab: on eqiad's
    production inventory, without lru_servers, it stops in its first play, before preflight
    contacts a host (none of eqiad's hosts is reachable from here, so any contact would show
    as UNREACHABLE)."""
    result = run_playbook(REPO / "inventories" / "eqiad", "shadow_lru.yml")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "lru_servers is not set, and this inventory" in output
    assert "is not the lab (no lab_container_prefix)" in output
    assert "UNREACHABLE" not in output
    assert "Preflight" not in output
