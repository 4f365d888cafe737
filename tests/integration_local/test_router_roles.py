"""Roles mcrouter and memcached_proxy, run for real (check mode, local connection) on the
routers and proxies of the inventories: the systemd unit and the config each would write.

mcrouter cannot be installed here, and the lab's routers run Debian trixie: the hosts are
described by their facts, and installing and starting are left out by the roles' tags.
The configs are compared with the reviewed golden files of tests/unit/golden.
"""

import json
import shlex

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
from ansible_collections.mcfleet.fleet.tests.integration_local.role_check import REPO, run_role
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import inventory_data

GOLDEN = REPO / "tests" / "unit" / "golden"
# The TLS material's files exist only where an operator's CA made them (not here). The
# proxies' firewall runs (check mode: it reads this machine's iptables, writes nothing).
MCROUTER_SKIP = ("mcrouter_install", "mcrouter_service", "mcrouter_tls")
PROXY_SKIP = ("memcached_proxy_install", "memcached_proxy_service", "memcached_proxy_tls")
FIREWALL_TASK = "Admit only other datacentres' routers and proxies and the controller to the proxy's ports"
ENGINES = {
    "mcrouter": {
        "role": "mcfleet.fleet.mcrouter",
        "skip": MCROUTER_SKIP,
        "debian": 12,
        "unit_task": "Install the router's systemd unit",
        "config_task": "Write mcrouter's JSON config from the topology model",
        "golden": "config.json",
        "extra_vars": {"mcrouter_deb": "/srv/debs/mcrouter.deb"},
    },
    "memcached_proxy": {
        "role": "mcfleet.fleet.memcached_proxy",
        "skip": PROXY_SKIP,
        "debian": 13,
        "unit_task": "Install the proxy's systemd unit",
        "config_task": "Write the proxy's routelib config from the topology model",
        "golden": "proxy.lua",
        "extra_vars": {},
    },
}
INVENTORY_ENGINE = {"eqiad": "mcrouter", "codfw": "mcrouter", "lab": "memcached_proxy"}


def unit_of(text):
    """{key: value} of a unit's lines, with ExecStart's continuation lines joined."""
    unit = {}
    for line in text.replace("\\\n", " ").splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            unit[key.strip()] = value.strip()
    return unit


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """{inventory: (model, {host: (unit text, config text)}, run)}, one role run per inventory."""
    results = {}
    for inventory, engine in INVENTORY_ENGINE.items():
        spec = ENGINES[engine]
        run = run_role(
            tmp_path_factory.mktemp(inventory),
            spec["role"],
            "routers:proxies",
            REPO / "inventories" / inventory,
            debian=spec["debian"],
            skip_tags=spec["skip"],
            extra_vars=spec["extra_vars"],
        )
        assert run.returncode == 0, run.failures() or run.output[-3000:]
        model = build_topology(*inventory_data(inventory))
        files = {
            host: (run.written(host, spec["unit_task"]), run.written(host, spec["config_task"]))
            for host in model["routers"]
        }
        results[inventory] = (model, files, run)
    return results


@pytest.mark.parametrize("inventory", ["eqiad", "codfw", "lab"])
def test_configs_are_the_golden_files(rendered, inventory):
    model, files, _run = rendered[inventory]
    assert files, f"{inventory} has no routers"
    for host, (_unit, config) in files.items():
        golden = GOLDEN / inventory / host / ENGINES[model["routers"][host]["engine"]]["golden"]
        assert config == golden.read_text(), f"{host}: config differs from {golden.relative_to(REPO)}"


@pytest.mark.parametrize("inventory", ["eqiad", "codfw"])
def test_mcrouter_units_carry_the_models_flags(rendered, inventory):
    model, files, _run = rendered[inventory]
    for host, (unit_text, config) in files.items():
        router = model["routers"][host]
        assert router["engine"] == "mcrouter"
        assert json.loads(config)["pools"], f"{host}: config without pools"
        unit = unit_of(unit_text)
        command = shlex.split(unit["ExecStart"])
        assert command[0] == "/usr/bin/mcrouter"
        flags = command[1:]
        tko = model["tko"]
        expected = {
            f"--port={router['port']}",
            "--config=file:/etc/mcrouter/config.json",
            f"--route-prefix={model['datacentres'][router['datacentre']]['route_prefix']}",
            "--num-proxies=1",
            f"--timeouts-until-tko={tko['timeouts_until_tko']}",
            f"--probe-timeout-initial={tko['probe_timeout_initial_ms']}",
            f"--probe-timeout-max={tko['probe_timeout_max_ms']}",
            "--async-dir=/var/spool/mcrouter",
            "--stats-root=/var/mcrouter/stats",
        }
        assert expected <= set(flags), f"{host}: missing {sorted(expected - set(flags))}"
        assert len(flags) == len(set(flags)), f"{host}: repeated flags {flags}"
        tls = sorted(flag for flag in flags if flag.startswith(("--ssl-", "--pem-")))
        # Every router dials the other datacentre's proxies with TLS; only proxies listen with it,
        # and they require the client's certificate.
        listener = (
            []
            if router["cross_dc_port"] is None
            else [f"--ssl-port={router['cross_dc_port']}", "--ssl-require-peer-certs"]
        )
        assert tls == [
            "--pem-ca-path=/etc/mcfleet/tls/ca.pem",
            "--pem-cert-path=/etc/mcfleet/tls/cert.pem",
            "--pem-key-path=/etc/mcfleet/tls/key.pem",
            *listener,
        ], f"{host}: TLS flags {tls}"
        assert unit["LimitNOFILE"] == "64000"
        assert unit["User"] == unit["Group"] == "mcrouter"
        assert "ExecReload" not in unit, "mcrouter reloads its config itself (file observer)"


def test_lab_units_run_memcacheds_proxy_on_the_models_listeners(rendered):
    model, files, _run = rendered["lab"]
    for host, (unit_text, config) in files.items():
        router = model["routers"][host]
        assert router["engine"] == "memcached_proxy"
        unit = unit_of(unit_text)
        command = shlex.split(unit["ExecStart"])
        assert command[0] == "/usr/bin/memcached"
        listeners = command[command.index("-l") + 1].split(",")
        # The lab talks TLS across datacentres: a proxy's router port stays plain (notls:),
        # its cross-datacentre port is memcached's TLS listener (-Z).
        expected = [f"{router['address']}:{router['port']}"]
        if router["role"] == "router":
            # App-server clients, and a drill's client placed there, use loopback.
            expected.append(f"127.0.0.1:{router['port']}")
        if router["cross_dc_port"] is not None:
            expected = [f"notls:{expected[0]}", f"{router['address']}:{router['cross_dc_port']}"]
            assert "-Z" in command, f"{host}: proxy without its TLS listener"
            assert "ssl_key=/etc/mcfleet/tls/key.pem" in command[command.index("-Z") + 2]
            assert "ssl_verify_mode=2" in command[command.index("-Z") + 2], f"{host}: accepts any client"
        else:
            assert "-Z" not in command, f"{host}: an app server's router does not listen with TLS"
        assert listeners == expected, f"{host}: listeners {listeners}"
        assert command[-1] == "proxy_config=routelib:/etc/mcfleet/routes.lua,proxy_arg=/etc/mcfleet/proxy.lua"
        assert int(command[command.index("-c") + 1]) < int(unit["LimitNOFILE"])
        assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
        assert config.startswith("-- mcfleet: memcached proxy"), f"{host}: not a proxy config"


def test_mcrouter_without_a_source_is_refused(tmp_path):
    run = run_role(
        tmp_path,
        "mcfleet.fleet.mcrouter",
        "mw1001.eqiad.wmnet",
        REPO / "inventories" / "eqiad",
        debian=12,
        skip_tags=MCROUTER_SKIP,
    )
    message = run.failures().get("mw1001.eqiad.wmnet", "")
    assert run.returncode != 0
    assert "mw1001.eqiad.wmnet: mcrouter is not installed (/usr/bin/mcrouter is absent)" in message
    assert "mcrouter_apt_repository=''" in message
    assert "mcrouter_deb=''" in message


def test_memcached_proxy_is_refused_before_trixie(tmp_path):
    run = run_role(
        tmp_path,
        "mcfleet.fleet.memcached_proxy",
        "mw1001",
        REPO / "inventories" / "lab",
        debian=12,
        skip_tags=PROXY_SKIP,
    )
    message = run.failures().get("mw1001", "")
    assert run.returncode != 0
    assert "mw1001: mcfleet_router_engine=memcached_proxy needs Debian 13 (trixie) or later" in message
    assert "this host runs Debian 12" in message


def test_eqiads_proxies_would_admit_only_codfws_app_servers_and_proxies_and_the_controller(rendered):
    _model, _files, run = rendered["eqiad"]
    rules = run.written("mwproxy1001.eqiad.wmnet", FIREWALL_TASK).splitlines()
    jump = [rule for rule in rules if rule.startswith("ipv4: -A INPUT") and "-j MCFLEET-PROXY" in rule]
    assert len(jump) == 1 and "--dports 11213,11214" in jump[0], rules
    accepted = [
        rule.split(" -s ")[1].split()[0] for rule in rules if rule.startswith("ipv4: -A MCFLEET-PROXY -s")
    ]
    codfw_proxies = [f"198.51.100.{n}/32" for n in range(169, 177)]
    assert accepted == ["198.51.100.128/27", *codfw_proxies, "198.51.100.250/32"]
    assert "ipv4: -A MCFLEET-PROXY -p tcp -j REJECT --reject-with tcp-reset" in rules
    # An app server's router takes no cross-datacentre clients: no firewall task runs there.
    assert FIREWALL_TASK not in run.tasks["mw1001.eqiad.wmnet"]


def test_a_proxy_firewall_that_would_shut_out_a_remote_datacentres_app_servers_is_refused(tmp_path):
    codfw_proxies = {"proxies_primary": ["198.51.100.169"], "proxies_secondary": ["198.51.100.173"]}
    run = run_role(
        tmp_path,
        "mcfleet.fleet.mcrouter",
        "mwproxy1001.eqiad.wmnet",
        REPO / "inventories" / "eqiad",
        debian=12,
        skip_tags=MCROUTER_SKIP,
        extra_vars={
            "mcrouter_deb": "/srv/debs/mcrouter.deb",
            "mcfleet_remote_datacentres": {"codfw": codfw_proxies},
            "proxy_firewall_client_networks": ["10.0.0.0/33"],
        },
    )
    message = run.failures().get("mwproxy1001.eqiad.wmnet", "")
    assert run.returncode != 0
    assert "the firewall would refuse the app servers of codfw" in message
    assert "mcfleet_remote_datacentres.<name>.router_networks" in message
    assert 'proxy_firewall_client_networks has "10.0.0.0/33"' in message
    # Refused before anything: the firewall task never ran.
    assert FIREWALL_TASK not in run.tasks["mwproxy1001.eqiad.wmnet"]
