"""The repository's own wiring: CI runs what the README tells a new user, and every scenario."""

import re

from ansible_collections.mcfleet.fleet.tests.topology_fixtures import REPO


def test_make_test_runs_every_molecule_scenario():
    makefile = (REPO / "Makefile").read_text()
    listed = re.search(r"^MOLECULE_SCENARIOS := (.+)$", makefile, re.MULTILINE).group(1).split()
    on_disk = sorted(path.parent.name for path in (REPO / "molecule").glob("*/molecule.yml"))
    assert sorted(listed) == on_disk


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / "README.md").read_text()
    assert "make test" in (REPO / ".ci" / "run").read_text()
