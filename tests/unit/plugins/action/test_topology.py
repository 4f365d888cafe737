"""The topology model: built from the real inventories, every validation error on its own, and
the topology action that sets it as a fact."""

import ipaddress
from types import SimpleNamespace
from unittest import mock

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible_collections.mcfleet.fleet.plugins.action.topology import ActionModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import (
    DEFAULTS,
    TKO_DEFAULTS,
    TopologyError,
    build_topology,
)
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import (
    inventory_data,
    small_fleet,
)


def problems_of(groups, hostvars):
    with pytest.raises(TopologyError) as caught:
        build_topology(groups, hostvars)
    return caught.value.problems


def only_problem(groups, hostvars):
    problems = problems_of(groups, hostvars)
    assert len(problems) == 1, problems
    return problems[0]


def test_lab_inventory_model():
    groups, hostvars = inventory_data("lab")
    model = build_topology(groups, hostvars)
    assert sorted(model["datacentres"]) == ["codfw", "eqiad"]
    eqiad = model["datacentres"]["eqiad"]
    assert eqiad["local"] is True
    assert eqiad["route_prefix"] == "/eqiad/mw/"
    assert eqiad["broadcast_prefix"] == "/eqiad/mw-wan/"
    assert [entry["host"] for entry in eqiad["main"]] == sorted(groups["eqiad_memcached_main"])
    assert eqiad["main"][0] == {"host": "mc1001", "address": "10.89.213.11", "port": 11211}
    assert [entry["host"] for entry in eqiad["gutter"]] == groups["eqiad_memcached_gutter"]
    # Proxies are reached from the other datacentre on the cross-datacentre port.
    # Each proxy has a fleet-wide tunnel port (codfw's two proxies come first).
    assert eqiad["proxies_primary"] == [
        {"host": "mwproxy1001", "address": "10.89.213.16", "port": 11214, "tunnel_port": 21216}
    ]
    assert model["gutter_ttl_s"] == hostvars["mc1001"]["mcfleet_gutter_ttl_s"]
    assert model["tko"] == {**TKO_DEFAULTS, **hostvars["mc1001"]["mcfleet_tko"]}
    assert model["cross_dc_tls"] is True
    assert model["tls"] == {
        "ca_file": "/var/lib/mcfleet/lab-tls/ca.pem",
        "paths": {
            "ca": "/etc/mcfleet/tls/ca.pem",
            "cert": "/etc/mcfleet/tls/cert.pem",
            "key": "/etc/mcfleet/tls/key.pem",
        },
        "tunnel_base_port": 21214,
    }
    assert model["routers"]["mw1001"] == {
        "datacentre": "eqiad",
        "engine": "memcached_proxy",
        "address": "10.89.213.15",
        "port": 11213,
        "role": "router",
        "cross_dc_port": None,
        # The unit test reads the inventory untemplated.
        "tls_files": {
            "cert": "/var/lib/mcfleet/lab-tls/{{ inventory_hostname }}.pem",
            "key": "/var/lib/mcfleet/lab-tls/{{ inventory_hostname }}.key",
        },
    }
    assert model["routers"]["mwproxy2002"]["role"] == "proxy_secondary"
    assert model["hosts"]["mc-gp2001"]["pool"] == "gutter"
    every_host = {host for group in ("memcached", "routers", "proxies") for host in groups[group]}
    assert set(model["hosts"]) == every_host


@pytest.mark.parametrize(("name", "remote"), [("eqiad", "codfw"), ("codfw", "eqiad")])
def test_production_inventory_model(name, remote):
    groups, hostvars = inventory_data(name)
    model = build_topology(groups, hostvars)
    local_dc, remote_dc = model["datacentres"][name], model["datacentres"][remote]
    assert len(local_dc["main"]) == len(groups["memcached_main"]) == 18
    assert len(local_dc["gutter"]) == 3
    assert remote_dc["local"] is False
    assert remote_dc["main"] == remote_dc["gutter"] == []
    declared = hostvars[groups["routers"][0]]["mcfleet_remote_datacentres"][remote]
    assert [entry["address"] for entry in remote_dc["proxies_primary"]] == sorted(declared["proxies_primary"])
    assert {entry["port"] for entry in remote_dc["proxies_secondary"]} == {model["ports"]["tls"]}
    assert {router["engine"] for router in model["routers"].values()} == {"mcrouter"}
    assert model["cross_dc_tls"] is True


def test_defaults_are_wikimedias():
    groups, hostvars = small_fleet()
    model = build_topology(groups, hostvars)
    assert model["ports"] == {"memcached": 11211, "router": 11213, "tls": 11214}
    assert model["gutter_ttl_s"] == DEFAULTS["mcfleet_gutter_ttl_s"] == 60
    assert model["failover_errors"] == ["tko"]
    assert model["tko"] == {
        "timeouts_until_tko": 10,
        "probe_timeout_initial_ms": 60000,
        "probe_timeout_max_ms": 60000,
        "server_timeout_ms": 1000,
        "cross_region_timeout_ms": 250,
        "cross_cluster_timeout_ms": 1000,
    }
    assert {router["engine"] for router in model["routers"].values()} == {"mcrouter"}


def test_model_does_not_depend_on_inventory_order():
    groups, hostvars = small_fleet()
    shuffled = {group: list(reversed(hosts)) for group, hosts in reversed(list(groups.items()))}
    shuffled_vars = dict(reversed(list(hostvars.items())))
    assert build_topology(shuffled, shuffled_vars) == build_topology(groups, hostvars)


def test_host_in_two_pools():
    groups, hostvars = small_fleet()
    groups["proxies_primary"].append("mw1001")
    assert only_problem(groups, hostvars) == "mw1001: host is in two pools: routers, proxies_primary"


def test_gutter_server_also_main_shard():
    groups, hostvars = small_fleet()
    groups["memcached_gutter"].append("mc1002")
    problem = only_problem(groups, hostvars)
    assert problem.startswith("mc1002: gutter server is also a main shard")


def test_empty_gutter_pool():
    groups, hostvars = small_fleet()
    groups["memcached_gutter"].remove("mc-gp2001")
    assert only_problem(groups, hostvars) == (
        "datacentre codfw: gutter pool (memcached_gutter) is empty while the main pool has 3 shards"
    )


def test_duplicate_host_port():
    groups, hostvars = small_fleet()
    hostvars["mc1003"]["mcfleet_address"] = "10.0.1.1"
    assert only_problem(groups, hostvars) == (
        "10.0.1.1:11211: duplicate host:port, used by both mc1001 and mc1003"
    )


def test_same_address_different_port_is_fine():
    groups, hostvars = small_fleet()
    hostvars["mc1003"].update(mcfleet_address="10.0.1.1", mcfleet_memcached_port=11311)
    model = build_topology(groups, hostvars)
    assert {"host": "mc1003", "address": "10.0.1.1", "port": 11311} in model["datacentres"]["eqiad"]["main"]


def test_route_to_unknown_datacentre():
    groups, hostvars = small_fleet()
    groups["routers"].append("mw4001")
    hostvars["mw4001"] = {**hostvars["mw1001"], "mcfleet_datacentre": "ulsfo", "mcfleet_address": "10.0.4.20"}
    problem = only_problem(groups, hostvars)
    assert problem.startswith("mw4001: mcfleet_datacentre 'ulsfo' routes to an unknown datacentre")


def test_remote_datacentre_without_proxies_is_a_route_to_nowhere():
    groups, hostvars = small_fleet(mcfleet_remote_datacentres={"ulsfo": {"proxies_secondary": ["10.0.4.1"]}})
    assert only_problem(groups, hostvars) == (
        "mcfleet_remote_datacentres.ulsfo.proxies_primary: empty, so routes to ulsfo lead nowhere"
    )


def test_remote_datacentre_also_in_inventory():
    groups, hostvars = small_fleet(mcfleet_remote_datacentres={"codfw": {"proxies_primary": ["10.0.9.1"]}})
    assert only_problem(groups, hostvars) == (
        "mcfleet_remote_datacentres.codfw: datacentre 'codfw' is also in this inventory"
    )


@pytest.mark.parametrize("ttl", [0, -5, 3601, "3601"])
def test_gutter_ttl_out_of_range(ttl):
    groups, hostvars = small_fleet(mcfleet_gutter_ttl_s=ttl)
    assert (
        only_problem(groups, hostvars)
        == f"mcfleet_gutter_ttl_s: {int(ttl)!r} is out of range 1..3600 seconds"
    )


@pytest.mark.parametrize("ttl", [1.5, "1.5", "sixty"])
def test_gutter_ttl_not_a_whole_number(ttl):
    groups, hostvars = small_fleet(mcfleet_gutter_ttl_s=ttl)
    assert only_problem(groups, hostvars) == (
        f"mcfleet_gutter_ttl_s: {ttl!r} is not a whole number of seconds (1..3600)"
    )


def test_gutter_ttl_given_as_text_is_read_as_a_number():
    # As `-e mcfleet_gutter_ttl_s=60` gives it.
    assert build_topology(*small_fleet(mcfleet_gutter_ttl_s="60"))["gutter_ttl_s"] == 60


def run_topology_action(groups, hostvars, **args):
    task = SimpleNamespace(args=args, check_mode=False, diff=False, async_val=0, action="topology")
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    action = ActionModule(task, connection, mock.MagicMock(), DataLoader(), None, None)
    action._load_name = "mcfleet.fleet.topology"
    return action.run(task_vars={"groups": groups, "hostvars": hostvars})


def test_topology_action_fails_listing_every_problem():
    groups, hostvars = small_fleet(mcfleet_gutter_ttl_s=0)
    hostvars["mw1001"]["mcfleet_router_engine"] = "nginx"
    result = run_topology_action(groups, hostvars)
    assert result["failed"] is True
    assert "mcfleet_gutter_ttl_s: 0" in result["msg"]
    assert "mw1001: mcfleet_router_engine 'nginx'" in result["msg"]
    assert len(result["problems"]) == 2, result["problems"]


def test_topology_action_sets_the_model_as_the_named_fact():
    groups, hostvars = small_fleet()
    result = run_topology_action(groups, hostvars, fact_name="fleet")
    assert result["changed"] is False
    assert result["ansible_facts"] == {"fleet": build_topology(groups, hostvars)}
    assert run_topology_action(groups, hostvars, fact="x")["msg"] == "unknown options: fact"


def test_topology_action_takes_a_shadow_for_the_run_over_the_inventorys():
    groups, hostvars = small_fleet()
    spare = {"host": "spare1", "address": "10.0.9.1"}
    result = run_topology_action(groups, hostvars, shadow={"shard": "mc1002", "candidates": [spare]})
    shadow = result["ansible_facts"]["mcfleet"]["shadow"]
    assert (shadow["shard"], shadow["shard_index"], shadow["routers"]) == ("mc1002", 1, ["mw1001"])
    # The inventory's mcfleet_shadow, fleet-wide like every fleet setting, holds without the option.
    for hvars in hostvars.values():
        hvars["mcfleet_shadow"] = {"shard": "mc2003", "candidates": [spare]}
    assert run_topology_action(groups, hostvars)["ansible_facts"]["mcfleet"]["shadow"]["shard"] == "mc2003"
    refused = run_topology_action(
        groups, hostvars, shadow={"shard": "mc1002", "candidates": [{"host": "mw1001"}]}
    )
    assert refused["failed"] and refused["problems"] == [
        "mcfleet_shadow.candidates[0].host: 'mw1001' is a production host (router): "
        "a shadow target must be a spare server"
    ]


def test_router_with_no_pools():
    groups, hostvars = small_fleet()
    for shard in ("mc2001", "mc2002", "mc2003"):
        groups["memcached_main"].remove(shard)
    problems = problems_of(groups, hostvars)
    assert "mw2001: router has no pools: datacentre 'codfw' has no memcached_main shards" in problems
    assert "mwproxy2001: proxy has no pools: datacentre 'codfw' has no memcached_main shards" in problems
    assert len(problems) == 2


def test_missing_and_invalid_address():
    groups, hostvars = small_fleet()
    del hostvars["mc1001"]["mcfleet_address"]
    hostvars["mc1002"]["mcfleet_address"] = "10.0.1.300"
    assert problems_of(groups, hostvars) == [
        "mc1001: mcfleet_address is missing",
        "mc1002: mcfleet_address '10.0.1.300' is not an IP address",
    ]


def test_missing_datacentre():
    groups, hostvars = small_fleet()
    del hostvars["mc-gp1001"]["mcfleet_datacentre"]
    assert "mc-gp1001: mcfleet_datacentre is missing" in problems_of(groups, hostvars)


def test_unknown_engine():
    groups, hostvars = small_fleet()
    hostvars["mw2001"]["mcfleet_router_engine"] = "twemproxy"
    assert only_problem(groups, hostvars) == (
        "mw2001: mcfleet_router_engine 'twemproxy' is not one of mcrouter, memcached_proxy"
    )


@pytest.mark.parametrize(
    ("tko", "expected"),
    [
        ({"timeouts_until_tko": 0}, "mcfleet_tko.timeouts_until_tko: 0 is not a positive integer"),
        ({"server_timeout_ms": "1s"}, "mcfleet_tko.server_timeout_ms: '1s' is not a positive integer"),
        ({"probe_timeout": 3}, "mcfleet_tko.probe_timeout: unknown setting"),
        (
            {"probe_timeout_initial_ms": 90000},
            "mcfleet_tko.probe_timeout_initial_ms: 90000 is above probe_timeout_max_ms 60000",
        ),
    ],
)
def test_bad_tko_values(tko, expected):
    groups, hostvars = small_fleet(mcfleet_tko=tko)
    assert only_problem(groups, hostvars).startswith(expected)


def test_unknown_failover_error():
    groups, hostvars = small_fleet(mcfleet_failover_errors=["tko", "timeout"])
    assert only_problem(groups, hostvars).startswith("mcfleet_failover_errors: 'timeout' is not an mcrouter")


def test_fleet_setting_that_differs_between_hosts():
    groups, hostvars = small_fleet()
    hostvars["mc2001"]["mcfleet_gutter_ttl_s"] = 30
    problem = only_problem(groups, hostvars)
    assert problem.startswith("mcfleet_gutter_ttl_s: differs between hosts")
    assert "30 on mc2001" in problem


def test_every_problem_is_reported_at_once():
    groups, hostvars = small_fleet(mcfleet_gutter_ttl_s=0)
    groups["memcached_gutter"].append("mc1002")
    hostvars["mc1003"]["mcfleet_address"] = "bogus"
    hostvars["mw1001"]["mcfleet_router_engine"] = "nginx"
    with pytest.raises(TopologyError) as caught:
        build_topology(groups, hostvars)
    assert len(caught.value.problems) == 4
    message = str(caught.value)
    assert message.startswith("invalid mcfleet topology (4 problems):")
    for needle in ("mcfleet_gutter_ttl_s: 0", "mc1002: gutter server", "'bogus'", "'nginx'"):
        assert needle in message


def test_release_is_in_the_model_and_none_when_not_set():
    groups, hostvars = small_fleet()
    hostvars["mc1001"]["mcfleet_release"] = "bookworm"
    model = build_topology(groups, hostvars)
    assert model["hosts"]["mc1001"]["release"] == "bookworm"
    assert model["hosts"]["mc1002"]["release"] is None


@pytest.mark.parametrize("release", ["stretch", "Bookworm", 12, ["bookworm"]])
def test_release_must_be_a_known_debian_release(release):
    groups, hostvars = small_fleet()
    hostvars["mw2001"]["mcfleet_release"] = release
    assert only_problem(groups, hostvars) == (
        f"mw2001: mcfleet_release {release!r} is not one of buster, bullseye, bookworm, trixie"
    )


@pytest.mark.parametrize("name", ["lab", "eqiad", "codfw"])
def test_inventories_set_the_release_of_memcached_hosts(name):
    groups, hostvars = inventory_data(name)
    model = build_topology(groups, hostvars)
    for host in groups["memcached"]:
        assert model["hosts"][host]["release"] == "bookworm"
    if name == "lab":
        assert {model["hosts"][host]["release"] for host in groups["routers"] + groups["proxies"]} == {
            "trixie"
        }
        assert all(model["hosts"][host]["release"] == hostvars[host]["lab_suite"] for host in model["hosts"])


def test_memcached_clients_are_the_routers_proxies_and_controller_that_reach_a_shard():
    from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import memcached_clients

    groups, hostvars = inventory_data("lab")
    for host in hostvars:
        hostvars[host]["mcfleet_controller_addresses"] = ["10.89.213.1"]
    model = build_topology(groups, hostvars)
    # eqiad's router and proxies, codfw's proxies (cross-DC traffic enters through them), the controller.
    assert memcached_clients(model, "mc1001") == [f"10.89.213.{n}/32" for n in (1, 15, 16, 17, 26, 27)]


def test_a_datacentre_without_proxies_admits_the_other_datacentres_routers():
    from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import memcached_clients

    groups, hostvars = small_fleet()
    groups["proxies_primary"] = []
    model = build_topology(groups, hostvars)
    codfw_router = model["datacentres"]["codfw"]["routers"][0]["address"]
    eqiad_router = model["datacentres"]["eqiad"]["routers"][0]["address"]
    # The renderers route /codfw/ straight to codfw's main pool, so eqiad's router is its client.
    assert f"{eqiad_router}/32" in memcached_clients(model, "mc2001")
    assert f"{codfw_router}/32" in memcached_clients(model, "mc1001")


def test_proxy_clients_are_the_other_datacentres_routers_and_proxies_and_the_controller():
    from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import proxy_clients

    groups, hostvars = inventory_data("lab")
    model = build_topology(groups, hostvars)
    # codfw's router and proxies (.25-.27) and the controller (.1); never eqiad's own hosts.
    assert proxy_clients(model, "mwproxy1001") == {
        "networks": [f"10.89.213.{n}/32" for n in (1, 25, 26, 27)],
        "unknown_datacentres": [],
    }


@pytest.mark.parametrize(
    ("name", "remote_routers"), [("eqiad", "198.51.100.128/27"), ("codfw", "198.51.100.0/28")]
)
def test_a_remote_datacentres_app_servers_reach_this_inventorys_proxies(name, remote_routers):
    from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import proxy_clients

    groups, hostvars = inventory_data(name)
    model = build_topology(groups, hostvars)
    remote = next(dc for dc in model["datacentres"].values() if not dc["local"])
    clients = proxy_clients(model, groups["proxies_primary"][0])
    assert clients["unknown_datacentres"] == []
    assert remote_routers in clients["networks"]
    # Every address the remote routers use is inside the declared network (the inventories agree).
    other_groups, other_hostvars = inventory_data(remote["name"])
    network = ipaddress.ip_network(remote_routers)
    assert all(
        ipaddress.ip_address(other_hostvars[host]["mcfleet_address"]) in network
        for host in other_groups["routers"]
    )
    for entry in remote["proxies_primary"] + remote["proxies_secondary"]:
        assert f"{entry['address']}/32" in clients["networks"]


def test_a_remote_datacentre_without_router_networks_is_named_as_unknown():
    from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import proxy_clients

    groups, hostvars = small_fleet(mcfleet_remote_datacentres={"ulsfo": {"proxies_primary": ["10.0.4.1"]}})
    model = build_topology(groups, hostvars)
    assert model["datacentres"]["ulsfo"]["router_networks"] is None
    assert proxy_clients(model, "mwproxy1001")["unknown_datacentres"] == ["ulsfo"]


@pytest.mark.parametrize(
    ("router_networks", "expected"),
    [
        (
            "10.0.5.0/33",
            "mcfleet_remote_datacentres.ulsfo.router_networks: '10.0.5.0/33' is not an IP address or network",
        ),
        (
            {"net": "10.0.5.0/24"},
            "mcfleet_remote_datacentres.ulsfo.router_networks: {'net': '10.0.5.0/24'} "
            "is not a list of addresses",
        ),
    ],
)
def test_bad_router_networks_are_refused_naming_the_field(router_networks, expected):
    spec = {"proxies_primary": ["10.0.4.1"], "router_networks": router_networks}
    groups, hostvars = small_fleet(mcfleet_remote_datacentres={"ulsfo": spec})
    assert only_problem(groups, hostvars) == expected


def test_tls_on_without_certificate_paths():
    groups, hostvars = small_fleet()
    del hostvars["mwproxy2001"]["mcfleet_tls_key_file"]
    for hvars in hostvars.values():
        hvars["mcfleet_tls_ca_file"] = None
    problems = problems_of(groups, hostvars)
    assert problems == [
        "mcfleet_tls_ca_file: None is not an absolute path to the CA certificate on the controller, and "
        "mcfleet_cross_dc_tls is true (TLS peers: mw1001, mw2001, mwproxy1001)",
        "mwproxy2001: mcfleet_tls_key_file is missing, and mcfleet_cross_dc_tls is true "
        "(this proxy serves TLS)",
    ]
    # Without TLS nothing is asked for, and the model names no files.
    model = build_topology(*small_fleet(mcfleet_cross_dc_tls=False, mcfleet_tls_cert_file=None))
    assert {router["tls_files"] for router in model["routers"].values()} == {None}


def test_a_router_with_no_remote_proxies_needs_no_certificate():
    groups, hostvars = small_fleet()
    groups["proxies_primary"] = []
    for hvars in hostvars.values():
        hvars.update(mcfleet_tls_cert_file=None, mcfleet_tls_key_file=None, mcfleet_tls_ca_file=None)
    model = build_topology(groups, hostvars)
    assert model["routers"]["mw1001"]["tls_files"] is None


def test_secondary_proxies_must_not_overlap_the_primary():
    groups, hostvars = small_fleet()
    groups["proxies_secondary"] = ["mwproxy2001"]
    assert only_problem(groups, hostvars) == (
        "proxies_secondary: mwproxy2001 is also in proxies_primary; the secondary set must be other hosts "
        "than the primary set, or it cannot take over when a primary is down"
    )


def test_remote_secondary_proxies_must_not_overlap_the_primary():
    groups, hostvars = small_fleet()
    remote = {"ulsfo": {"proxies_primary": ["10.0.4.1", "10.0.4.2"], "proxies_secondary": ["10.0.4.2"]}}
    for hvars in hostvars.values():
        hvars["mcfleet_remote_datacentres"] = remote
    assert only_problem(groups, hostvars) == (
        "mcfleet_remote_datacentres.ulsfo.proxies_secondary: 10.0.4.2 also in proxies_primary; the secondary "
        "set must be other hosts than the primary set"
    )


def test_tunnel_ports_are_fleet_wide_and_in_range():
    model = build_topology(*small_fleet(mcfleet_tls_tunnel_base_port=30000))
    ports = {
        entry["host"]: entry["tunnel_port"]
        for dc in model["datacentres"].values()
        for entry in dc["proxies_primary"] + dc["proxies_secondary"]
    }
    assert ports == {"mwproxy2001": 30000, "mwproxy1001": 30001}
    assert only_problem(*small_fleet(mcfleet_tls_tunnel_base_port=65535)) == (
        "mcfleet_tls_tunnel_base_port: 65535 is not a port from 1024 that leaves room for 2 tunnels "
        "below 65536"
    )
