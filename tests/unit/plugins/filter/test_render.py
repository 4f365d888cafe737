"""Rendered router configurations: golden files, mcrouter route handle structure, flags.

Regenerate the golden files after an intended change with
    MCFLEET_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/plugins/filter/test_render.py
and review the diff like any other change.
"""

import json
import os
import re

import pytest
from ansible_collections.mcfleet.fleet.plugins.filter.mcfleet import CONFIG_NAMES, router_config
from ansible_collections.mcfleet.fleet.plugins.module_utils import render_mcrouter, render_memcached_proxy
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import (
    INVENTORIES,
    REPO,
    inventory_data,
    small_fleet,
)

GOLDEN = REPO / "tests" / "unit" / "golden"
UPDATE = os.environ.get("MCFLEET_UPDATE_GOLDEN") == "1"
SERVER = re.compile(r"^(\[[0-9a-f:]+\]|[0-9.]+):(\d+):ascii:(plain|ssl)$")


def model_of(inventory):
    return build_topology(*inventory_data(inventory))


def rendered_files(inventory):
    """{relative path: text} of every router's config, as render.yml writes them, plus its
    command line (mcrouter's flags, or memcached's options: TLS listener and certificate paths)
    and, for a memcached proxy dialing TLS, its tunnels (as the memcached_proxy role renders them)."""
    model = model_of(inventory)
    files = {}
    for host, router in model["routers"].items():
        files[f"{host}/{CONFIG_NAMES[router['engine']]}"] = router_config(model, host)
        if router["engine"] == "mcrouter":
            flags = render_mcrouter.command_line_flags(model, host)
        else:
            flags = render_memcached_proxy.command_line_options(model, host)
            tunnels = render_memcached_proxy.tls_tunnels(model, host)
            if tunnels:
                files[f"{host}/tls_tunnels.json"] = json.dumps(tunnels, indent=2) + "\n"
        files[f"{host}/command_line"] = "\n".join(flags) + "\n"
    return files


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_golden_files(inventory):
    files = rendered_files(inventory)
    directory = GOLDEN / inventory
    if UPDATE:
        for path, text in files.items():
            (directory / path).parent.mkdir(parents=True, exist_ok=True)
            (directory / path).write_text(text)
    on_disk = {str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file()}
    assert on_disk == set(files), "golden files out of date: MCFLEET_UPDATE_GOLDEN=1 regenerates them"
    for path, text in files.items():
        assert (directory / path).read_text() == text, f"{inventory}/{path} differs from its golden file"


def walk_handles(handle, found):
    """Every route handle under `handle` (dicts and "Type|arg" strings), depth first."""
    found.append(handle)
    if isinstance(handle, dict):
        for field in ("normal", "failover", "default_policy"):
            if field in handle:
                walk_handles(handle[field], found)
        for child in handle.get("children", []):
            walk_handles(child, found)
        for policy in handle.get("operation_policies", {}).values():
            walk_handles(policy, found)
    return found


def mcrouter_configs():
    for inventory in INVENTORIES:
        model = model_of(inventory)
        for host in model["routers"]:
            yield inventory, host, model, render_mcrouter.render_config(model, host)


@pytest.mark.parametrize(("inventory", "host", "model", "config"), list(mcrouter_configs()))
def test_every_mcrouter_handle_is_well_formed(inventory, host, model, config):
    pools = config["pools"]
    used_pools = set()
    for pool in pools.values():
        assert pool["servers"], "empty pool"
        for server in pool["servers"]:
            assert SERVER.match(server), server
    handles = []
    for route in config["routes"]:
        assert len(route["aliases"]) == 1 and route["aliases"][0].startswith("/")
        walk_handles(route["route"], handles)
    assert handles
    for handle in handles:
        if isinstance(handle, str):
            kind, _bar, pool = handle.partition("|")
            assert kind == "PoolRoute", handle
            assert pool in pools, f"{handle} names an unknown pool"
            used_pools.add(pool)
            continue
        assert handle["type"] in render_mcrouter.ROUTE_HANDLE_FIELDS, handle["type"]
        for field in render_mcrouter.ROUTE_HANDLE_FIELDS[handle["type"]]:
            assert field in handle, f"{handle['type']} lacks {field}"
        if handle["type"] == "FailoverWithExptimeRoute":
            assert handle["failover_exptime"] == model["gutter_ttl_s"]
            assert handle["failover_errors"] == model["failover_errors"]
        if handle["type"] == "OperationSelectorRoute":
            assert set(handle["operation_policies"]) == set(render_mcrouter.BROADCAST_OPERATIONS)
    assert used_pools == set(pools), "a pool no route uses"
    # Every datacentre is routed, by its own prefix and its broadcast prefix.
    aliases = [route["aliases"][0] for route in config["routes"]]
    datacentres = model["datacentres"].values()
    expected = {prefix for dc in datacentres for prefix in (dc["route_prefix"], dc["broadcast_prefix"])}
    assert set(aliases) == expected and len(aliases) == len(expected)


def test_mcrouter_local_route_fails_over_to_the_gutter_and_remote_goes_through_proxies():
    model = model_of("eqiad")
    config = render_mcrouter.render_config(model, "mw1001.eqiad.wmnet")
    routes = {route["aliases"][0]: route["route"] for route in config["routes"]}
    local = routes["/eqiad/mw/"]
    assert local["normal"] == "PoolRoute|eqiad" and local["failover"] == "PoolRoute|eqiad-gutter"
    eqiad_hosts = [f"{entry['address']}:11211:ascii:plain" for entry in model["datacentres"]["eqiad"]["main"]]
    assert config["pools"]["eqiad"]["servers"] == eqiad_hosts
    assert routes["/codfw/mw/"] == {
        "type": "FailoverRoute",
        "children": ["PoolRoute|codfw-proxies", "PoolRoute|codfw-proxies-secondary"],
    }
    assert all(server.endswith(":11214:ascii:ssl") for server in config["pools"]["codfw-proxies"]["servers"])
    wan_local = routes["/eqiad/mw-wan/"]["operation_policies"]["set"]
    wan_remote = routes["/codfw/mw-wan/"]["operation_policies"]["delete"]
    assert wan_local == {"type": "AllSyncRoute", "children": [local]}
    assert wan_remote == {"type": "AllAsyncRoute", "children": [routes["/codfw/mw/"]]}
    # The local datacentre's routes come first.
    assert [route["aliases"][0] for route in config["routes"]][:2] == ["/eqiad/mw/", "/eqiad/mw-wan/"]


def test_mcrouter_json_is_deterministic():
    groups, hostvars = inventory_data("codfw")
    first = render_mcrouter.render_config_text(build_topology(groups, hostvars), "mw2001.codfw.wmnet")
    reordered = {group: list(reversed(hosts)) for group, hosts in groups.items()}
    second = render_mcrouter.render_config_text(build_topology(reordered, hostvars), "mw2001.codfw.wmnet")
    assert first == second
    assert json.loads(first)["pools"]


def test_ipv6_servers_are_bracketed():
    groups, hostvars = small_fleet()
    hostvars["mc1001"]["mcfleet_address"] = "2001:db8::11"
    config = render_mcrouter.render_config(build_topology(groups, hostvars), "mw1001")
    assert "[2001:db8::11]:11211:ascii:plain" in config["pools"]["eqiad"]["servers"]


def test_mcrouter_flags_come_from_the_model():
    tko = {"timeouts_until_tko": 4, "probe_timeout_initial_ms": 7000, "probe_timeout_max_ms": 9000}
    groups, hostvars = small_fleet(mcfleet_tko=tko, mcfleet_router_port=11300)
    model = build_topology(groups, hostvars)
    flags = render_mcrouter.command_line_flags(model, "mw2001", "/etc/mcrouter/config.json")
    assert "--port=11300" in flags
    assert "--route-prefix=/codfw/mw/" in flags
    assert "--config=file:/etc/mcrouter/config.json" in flags
    assert "--timeouts-until-tko=4" in flags
    assert "--probe-timeout-initial=7000" in flags
    assert "--probe-timeout-max=9000" in flags
    assert f"--cross-region-timeout-ms={model['tko']['cross_region_timeout_ms']}" in flags
    assert not any(flag.startswith("--ssl-port") for flag in flags)
    # An app server dials the other datacentre's proxies with TLS: certificate paths, no listener.
    assert "--pem-cert-path=/etc/mcfleet/tls/cert.pem" in flags
    tls = {"cert": "/etc/mcrouter/ssl/cert.pem", "key": "/etc/mcrouter/ssl/key.pem", "ca": "/etc/ssl/ca.pem"}
    proxy_flags = render_mcrouter.command_line_flags(model, "mwproxy2001", tls_paths=tls)
    assert "--ssl-port=11214" in proxy_flags
    assert "--pem-ca-path=/etc/ssl/ca.pem" in proxy_flags
    # Mutual TLS: a proxy refuses a client without a certificate; an app server listens with none.
    assert "--ssl-require-peer-certs" in proxy_flags
    assert "--ssl-require-peer-certs" not in flags
    plain = build_topology(*small_fleet(mcfleet_cross_dc_tls=False))
    assert not any(
        flag.startswith(("--ssl", "--pem"))
        for flag in render_mcrouter.command_line_flags(plain, "mwproxy2001")
    )


def test_memcached_proxy_settings_come_from_the_tko_settings():
    tko = {"timeouts_until_tko": 5, "server_timeout_ms": 500, "probe_timeout_initial_ms": 4000}
    groups, hostvars = small_fleet(
        mcfleet_tko=tko, mcfleet_router_engine="memcached_proxy", mcfleet_gutter_ttl_s=7
    )
    model = build_topology(groups, hostvars)
    text = render_memcached_proxy.render_config_text(model, "mw1001")
    assert "backend_failure_limit = 5," in text
    assert "backend_connect_timeout = 0.5," in text
    assert "backend_read_timeout = 0.5," in text
    assert "backend_retry_waittime = 4," in text
    assert 'route_ttl{ ttl = 7, child = "eqiad_gutter" }' in text
    options = render_memcached_proxy.command_line_options(model, "mwproxy1001", "/c.lua", "/l.lua")
    # Cross-datacentre TLS is on: memcached's own TLS listener on the cross-datacentre port only,
    # requiring a client certificate of the CA (mutual TLS).
    assert options == [
        "-l",
        "notls:10.0.1.30:11213,10.0.1.30:11214",
        "-Z",
        "-o",
        "ssl_chain_cert=/etc/mcfleet/tls/cert.pem,ssl_key=/etc/mcfleet/tls/key.pem,ssl_ca_cert=/etc/mcfleet/tls/ca.pem,"
        "ssl_verify_mode=2",
        "-o",
        "proxy_config=routelib:/l.lua,proxy_arg=/c.lua",
    ]
    # An app server's router also listens on loopback, for the clients on that host.
    assert render_memcached_proxy.command_line_options(model, "mw1001", "/c.lua", "/l.lua")[:2] == [
        "-l",
        f"{model['routers']['mw1001']['address']}:11213,127.0.0.1:11213",
    ]
    plain = build_topology(*small_fleet(mcfleet_router_engine="memcached_proxy", mcfleet_cross_dc_tls=False))
    assert render_memcached_proxy.command_line_options(plain, "mwproxy1001", "/c.lua", "/l.lua")[:2] == [
        "-l",
        "10.0.1.30:11213,10.0.1.30:11214",
    ]
    assert render_memcached_proxy.tls_tunnels(plain, "mw1001") == []
    # The router reaches codfw's proxy through its local tunnel, not directly.
    assert render_memcached_proxy.tls_tunnels(model, "mw1001") == [
        {"name": "mwproxy2001", "accept_port": 21214, "address": "10.0.2.30", "port": 11214}
    ]
    assert '{ host = "127.0.0.1", port = 21214, label = "mwproxy2001" }' in text
