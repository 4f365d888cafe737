"""The collection as someone else gets it: built, installed outside this checkout, used by name."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import REPO

BIN = Path(sys.executable).parent


def run(argv, cwd, env):
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_built_collection_installs_elsewhere_and_runs_site_and_render_by_name(tmp_path):
    # An operator's own directory: their inventory, no ansible.cfg of ours, our collection by name.
    workdir = tmp_path / "operator"
    shutil.copytree(REPO / "inventories" / "eqiad", workdir / "inventory")
    (workdir / "ansible.cfg").write_text("[defaults]\n")
    installed = tmp_path / "collections"
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("ANSIBLE_")},
        "ANSIBLE_COLLECTIONS_PATH": str(installed),
        "ANSIBLE_CONFIG": str(workdir / "ansible.cfg"),
    }
    galaxy, playbook = str(BIN / "ansible-galaxy"), str(BIN / "ansible-playbook")

    built = run([galaxy, "collection", "build", "--output-path", str(tmp_path), str(REPO)], REPO, env)
    assert built.returncode == 0, built.stdout + built.stderr
    (tarball,) = tmp_path.glob("mcfleet-fleet-*.tar.gz")
    # --force: a copy elsewhere on this machine (Molecule's, a linter's) must not stand in for it.
    installing = run(
        [galaxy, "collection", "install", "--force", "-p", str(installed), str(tarball)], workdir, env
    )
    assert installing.returncode == 0, installing.stdout + installing.stderr

    syntax = run([playbook, "-i", "inventory", "mcfleet.fleet.site", "--syntax-check"], workdir, env)
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
    assert (
        str(installed / "ansible_collections" / "mcfleet" / "fleet" / "playbooks" / "site.yml")
        in syntax.stdout
    )

    out = workdir / "render"
    render = run(
        [playbook, "-i", "inventory", "mcfleet.fleet.render", "-e", f"render_dir={out}"], workdir, env
    )
    assert render.returncode == 0, render.stdout + render.stderr
    assert (out / "mw1001.eqiad.wmnet" / "config.json").read_text().startswith("{")
