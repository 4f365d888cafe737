"""Role mcrouter rendered and run by real ansible-playbook, without any router host.

mcrouter cannot be installed here, so its systemd unit (the flags) and config are
checked by rendering the role's own templates with its own defaults and vars for every
router of the production-shaped inventories; the lab's memcached-proxy units likewise.
The preflight refusals run the role's preflight on this machine (connection local, read
only): no mcrouter source configured, and memcached's proxy asked of a Debian 12 host.
"""

import json
import os
import shlex
import subprocess
import textwrap

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils import render_mcrouter
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
from ansible_collections.mcfleet.fleet.tests.topology_fixtures import REPO, inventory_data

ROLE = REPO / "roles" / "mcrouter"
ENV = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}


def ansible_playbook(playbook, inventory, *extra):
    return subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(REPO / "inventories" / inventory),
            str(playbook),
            *extra,
        ],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def render_role(inventory, out_dir, tmp_path):
    """Render each router's unit and config with the role's templates, defaults and vars."""
    playbook = tmp_path / "render_role.yml"
    playbook.write_text(
        textwrap.dedent(f"""\
        - name: Build the topology model
          ansible.builtin.import_playbook: {REPO}/playbooks/topology.yml

        - name: Render the role's unit and config for every router, on the controller only
          hosts: routers:proxies
          gather_facts: false
          tasks:
            - name: Load the role's defaults
              ansible.builtin.include_vars: {ROLE}/defaults/main.yml
            - name: Load the role's derived vars
              ansible.builtin.include_vars: {ROLE}/vars/main.yml
            - name: Render the unit
              ansible.builtin.template:
                src: "{ROLE}/templates/{{{{ mcrouter_engine }}}}.service.j2"
                dest: "{out_dir}/{{{{ inventory_hostname }}}}.service"
                mode: "0644"
              delegate_to: localhost
            - name: Render the config
              ansible.builtin.copy:
                content: "{{{{ _mcrouter_config_text }}}}"
                dest: "{out_dir}/{{{{ inventory_hostname }}}}.config"
                mode: "0644"
              delegate_to: localhost
        """)
    )
    result = ansible_playbook(playbook, inventory)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def unit_of(path):
    """{key: value} of a unit's lines, with ExecStart's continuation lines joined."""
    text = path.read_text().replace("\\\n", " ")
    unit = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            unit[key.strip()] = value.strip()
    return unit


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """{inventory: (model, directory of rendered files)}, rendered once per inventory."""
    results = {}
    for inventory in ("eqiad", "codfw", "lab"):
        tmp_path = tmp_path_factory.mktemp(inventory)
        out_dir = tmp_path / "out"
        out_dir.mkdir()
        render_role(inventory, out_dir, tmp_path)
        results[inventory] = (build_topology(*inventory_data(inventory)), out_dir)
    return results


@pytest.mark.parametrize("inventory", ["eqiad", "codfw"])
def test_production_mcrouter_units_carry_the_models_flags(rendered, inventory):
    model, out_dir = rendered[inventory]
    assert model["routers"], f"{inventory} has no routers"
    for host, router in model["routers"].items():
        assert router["engine"] == "mcrouter"
        unit = unit_of(out_dir / f"{host}.service")
        command = shlex.split(unit["ExecStart"])
        assert command[0] == "/usr/bin/mcrouter"
        flags = command[1:]
        tko = model["tko"]
        expected = {
            f"--port={router['port']}",
            "--config=file:/etc/mcrouter/config.json",
            f"--route-prefix={model['datacentres'][inventory]['route_prefix']}",
            "--send-invalid-route-to-default",
            "--num-proxies=1",
            "--server-timeout=1000",
            "--cross-region-timeout-ms=250",
            "--cross-cluster-timeout-ms=1000",
            f"--timeouts-until-tko={tko['timeouts_until_tko']}",
            f"--probe-timeout-initial={tko['probe_timeout_initial_ms']}",
            f"--probe-timeout-max={tko['probe_timeout_max_ms']}",
            "--async-dir=/var/spool/mcrouter",
            "--stats-root=/var/mcrouter/stats",
        }
        assert expected <= set(flags), f"{host}: missing {sorted(expected - set(flags))}"
        assert len(flags) == len(set(flags)), f"{host}: repeated flags {flags}"
        # REFERENCE.md §1: production TKO settings after T255511.
        assert "--timeouts-until-tko=10" in flags
        assert "--probe-timeout-initial=60000" in flags
        tls = [flag for flag in flags if flag.startswith(("--ssl-port=", "--pem-"))]
        if router["role"] == "router":
            assert tls == [], f"{host}: an app server's router must not listen with TLS: {tls}"
        else:
            assert sorted(tls) == [
                "--pem-ca-path=/etc/mcrouter/ssl/ca.pem",
                "--pem-cert-path=/etc/mcrouter/ssl/cert.pem",
                "--pem-key-path=/etc/mcrouter/ssl/key.pem",
                f"--ssl-port={model['ports']['tls']}",
            ], f"{host}: proxy TLS flags {tls}"
        assert unit["LimitNOFILE"] == "64000"
        assert unit["User"] == unit["Group"] == "mcrouter"
        assert "ExecReload" not in unit, "mcrouter reloads its config itself (file observer)"


@pytest.mark.parametrize("inventory", ["eqiad", "codfw"])
def test_production_configs_are_the_renderers_json(rendered, inventory):
    model, out_dir = rendered[inventory]
    for host in model["routers"]:
        text = (out_dir / f"{host}.config").read_text()
        assert text == render_mcrouter.render_config_text(model, host)
        assert json.loads(text)["pools"], f"{host}: config without pools"


def test_lab_units_run_memcacheds_proxy_on_the_models_listeners(rendered):
    model, out_dir = rendered["lab"]
    for host, router in model["routers"].items():
        assert router["engine"] == "memcached_proxy"
        unit = unit_of(out_dir / f"{host}.service")
        command = shlex.split(unit["ExecStart"])
        assert command[0] == "/usr/bin/memcached"
        listeners = command[command.index("-l") + 1].split(",")
        expected = [f"{router['address']}:{router['port']}"]
        if router["cross_dc_port"] is not None:
            expected.append(f"{router['address']}:{router['cross_dc_port']}")
        assert listeners == expected, f"{host}: listeners {listeners}"
        assert command[command.index("-o") + 1] == (
            "proxy_config=routelib:/etc/mcfleet/routes.lua,proxy_arg=/etc/mcfleet/router.lua"
        )
        assert int(command[command.index("-c") + 1]) < int(unit["LimitNOFILE"])
        assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
        assert unit["User"] == "mcrouter"
        config = (out_dir / f"{host}.config").read_text()
        assert config.startswith("-- mcfleet: memcached proxy"), f"{host}: not a proxy config"


def preflight_playbook(tmp_path, hosts):
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(
        textwrap.dedent(f"""\
        - name: Build the topology model
          ansible.builtin.import_playbook: {REPO}/playbooks/topology.yml

        - name: Run the role's preflight on this machine
          hosts: {hosts}
          gather_facts: false
          tasks:
            - name: Preflight of role mcrouter
              ansible.builtin.include_role:
                name: mcrouter
                tasks_from: preflight
        """)
    )
    return playbook


def test_preflight_refuses_mcrouter_without_a_source(tmp_path):
    playbook = preflight_playbook(tmp_path, "mw1001.eqiad.wmnet")
    result = ansible_playbook(playbook, "eqiad", "-e", "ansible_connection=local")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "mw1001.eqiad.wmnet: mcrouter is not installed (/usr/bin/mcrouter is absent)" in output
    assert "mcrouter_apt_repository=''" in output
    assert "mcrouter_deb=''" in output


def test_preflight_accepts_mcrouter_from_a_deb(tmp_path):
    playbook = preflight_playbook(tmp_path, "mw1001.eqiad.wmnet")
    result = ansible_playbook(
        playbook, "eqiad", "-e", "ansible_connection=local", "-e", "mcrouter_deb=/srv/debs/mcrouter.deb"
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_preflight_refuses_memcached_proxy_before_trixie(tmp_path):
    # This machine is Debian 12 (bookworm), whose memcached has no proxy.
    playbook = preflight_playbook(tmp_path, "mw1001")
    result = ansible_playbook(playbook, "lab", "-e", "ansible_connection=local")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "mw1001: mcrouter_engine=memcached_proxy needs Debian 13 (trixie) or later" in output
    assert "this host runs Debian 12" in output
