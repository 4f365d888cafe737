"""Render roles/memcached's memcached.conf for every supported release with real Ansible.

Buster cannot run here (its images are archived), so rendering is the only check it gets;
bullseye to trixie are also started for real by the Molecule scenario `memcached`.
"""

import os
import subprocess

import pytest
import yaml
from ansible_collections.mcfleet.fleet.tests.topology_fixtures import REPO

ROLE = REPO / "roles" / "memcached"
RELEASES = {10: "1.5.6", 11: "1.6.9", 12: "1.6.18", 13: "1.6.38"}
ANSIBLE_PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def render_play(major, dest, extra_vars):
    return {
        "name": f"Render for Debian {major}",
        "hosts": "localhost",
        "gather_facts": False,
        # Play vars rank below vars_files: the role defaults go with the overrides, as in a role.
        "vars_files": [str(ROLE / "vars" / "main.yml"), str(ROLE / "vars" / f"Debian_{major}.yml")],
        "vars": {**DEFAULTS, "mcfleet_address": "192.0.2.10", **extra_vars},
        "tasks": [
            {
                "name": "Render memcached.conf",
                "ansible.builtin.template": {
                    "src": str(ROLE / "templates" / "memcached.conf.j2"),
                    "dest": str(dest),
                    "mode": "0644",
                },
            }
        ],
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("memcached-conf")
    plays = []
    for major in RELEASES:
        plays.append(render_play(major, out / f"plain-{major}.conf", {}))
        if major >= 12:  # TLS and extstore builds
            plays.append(
                render_play(
                    major,
                    out / f"tls-{major}.conf",
                    {
                        "memcached_tls_enabled": True,
                        "memcached_tls_ca_path": "/etc/memcached/tls/ca.pem",
                        "memcached_extstore_path": "/var/lib/memcached/extstore",
                        "memcached_extstore_size_mb": 2048,
                    },
                )
            )
    playbook = out / "render.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCALHOST_WARNING": "false"}
    result = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", str(playbook)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {path.stem: path.read_text() for path in out.glob("*.conf")}


def options(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def extended_option_names(text):
    names = []
    for line in options(text):
        if line.startswith("-o "):
            names += [item.split("=")[0] for item in line[3:].split(",")]
    return names


@pytest.mark.parametrize("major", RELEASES)
def test_core_settings_for_every_release(rendered, major):
    lines = options(rendered[f"plain-{major}"])
    for expected in ("-p 11211", "-U 0", "-u memcache", "-m 1024", "-c 25000", "-t 4", "-f 1.15", "-n 48"):
        assert expected in lines
    assert "-I 1024k" in lines
    assert "-l 192.0.2.10" in lines, "listens on mcfleet_address by default"
    assert "-Z" not in lines
    assert f"memcached {RELEASES[major]} options" in rendered[f"plain-{major}"]


@pytest.mark.parametrize("major", RELEASES)
def test_only_options_the_release_accepts(rendered, major):
    accepted = yaml.safe_load((ROLE / "vars" / f"Debian_{major}.yml").read_text())
    known = set(accepted["_memcached_release_extended_options"])
    names = extended_option_names(rendered[f"plain-{major}"])
    assert names[0] == "modern", "modern first, so explicit options after it win"
    assert set(names) <= known, f"Debian {major}: {set(names) - known} not accepted by {RELEASES[major]}"


@pytest.mark.parametrize("major", [12, 13])
def test_tls_and_extstore_where_built(rendered, major):
    lines = options(rendered[f"tls-{major}"])
    assert "-Z" in lines
    assert "-l notls:192.0.2.10:11211" in lines, "the plain port stays plain"
    assert "-l 192.0.2.10:11214" in lines
    assert (
        "-o ssl_chain_cert=/etc/memcached/tls/cert.pem,ssl_key=/etc/memcached/tls/key.pem,"
        "ssl_ca_cert=/etc/memcached/tls/ca.pem"
    ) in lines
    assert "-o ext_path=/var/lib/memcached/extstore:2048M" in lines


@pytest.mark.parametrize("major", [10, 11])
def test_releases_without_tls_say_so(major):
    release = yaml.safe_load((ROLE / "vars" / f"Debian_{major}.yml").read_text())
    assert release["_memcached_release_supports_tls"] is False
