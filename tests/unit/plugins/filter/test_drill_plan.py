"""The drill's plan: which shards it blocks, and every refusal named by field and value."""

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils.drill_plan import plan_drill
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import inventory_data

LAB_SUBNET = "10.89.213.0/24"


@pytest.fixture(scope="module")
def lab():
    groups, hostvars = inventory_data("lab")
    return build_topology(groups, hostvars), groups["all"]


@pytest.fixture(scope="module")
def eqiad():
    groups, hostvars = inventory_data("eqiad")
    return build_topology(groups, hostvars), groups["all"]


def test_one_shard_is_drilled_in_its_datacentre(lab):
    plan = plan_drill(*lab, shard="mc2001", mode="drop", policy="flush", lab_subnet=LAB_SUBNET)
    lab_router = lab[0]["routers"]["mw2001"]
    assert plan == {
        "datacentre": "codfw",
        "targets": ["mc2001"],
        "rollback_s": 300,
        "knobs": {"baseline_s": 3, "hold_s": 5, "traffic_rate": 200, "traffic_max_s": 600},
        # In the lab the client is the controller, against the router's lab address.
        "client": {
            "host": "localhost",
            "router": {"address": lab_router["address"], "port": 11213, "engine": "memcached_proxy"},
            "router_host": "mw2001",
            "allowed_networks": [LAB_SUBNET],
            "on_router_host": False,
            "work_dir": None,
        },
        "problems": [],
    }


def test_a_datacentre_drills_every_main_shard_in_turn(lab):
    plan = plan_drill(*lab, datacentre="eqiad", lab_subnet=LAB_SUBNET)
    assert plan["targets"] == ["mc1001", "mc1002", "mc1003"]
    assert plan["problems"] == []


def test_every_bad_field_is_named_at_once_and_nothing_is_targeted(lab):
    plan = plan_drill(
        *lab, shard="mc-gp1001", mode="sideways", policy="sometimes", rollback_s=0, lab_subnet=LAB_SUBNET
    )
    assert plan["targets"] == []
    assert plan["problems"] == [
        "drill_shard=mc-gp1001: not a main memcached shard (its pool is gutter);"
        " a drill blocks a main shard only",
        "drill_mode=sideways: not one of reject, drop",
        "rejoin_policy=sometimes: not one of flush, keep",
        "drill_rollback_s=0: must be a whole number of seconds from 1 to 86400",
    ]


@pytest.mark.parametrize(
    ("choices", "problem"),
    [
        ({}, "drill_shard: set drill_shard=HOST, drill_shard=all or drill_datacentre=DC"),
        ({"shard": "mc9999"}, "drill_shard=mc9999: no such host in this inventory"),
        ({"shard": "mw1001"}, "drill_shard=mw1001: not a main memcached shard (its pool is router)"),
        ({"datacentre": "ulsfo"}, "drill_datacentre=ulsfo: not one of codfw, eqiad"),
        (
            {"shard": "mc1001", "datacentre": "codfw"},
            "drill_datacentre=codfw: drill_shard=mc1001 is in eqiad",
        ),
        ({"shard": "all"}, "drill_shard=all: this inventory has datacentres codfw, eqiad"),
        ({"shard": "mc1001", "rollback_s": "-5"}, "drill_rollback_s=-5: must be a whole number"),
        ({"shard": "mc1001", "rollback_s": "86401"}, "drill_rollback_s=86401: must be a whole number"),
    ],
)
def test_each_refusal_names_the_field_and_value(lab, choices, problem):
    plan = plan_drill(*lab, lab_subnet=LAB_SUBNET, **choices)
    assert plan["targets"] == []
    assert any(found.startswith(problem) for found in plan["problems"]), plan["problems"]


def test_elsewhere_the_client_runs_on_the_app_server_against_its_router_over_loopback(eqiad):
    plan = plan_drill(*eqiad, shard="all")
    router = plan["client"]["router_host"]
    assert plan["problems"] == []
    assert plan["datacentre"] == "eqiad"
    assert plan["client"]["host"] == router
    assert router in eqiad[0]["routers"]
    assert plan["client"]["router"]["address"] == "127.0.0.1"
    assert plan["client"]["allowed_networks"] == ["127.0.0.0/8", "::1/128"]


def test_the_lab_can_place_the_client_on_a_named_app_server(lab):
    plan = plan_drill(*lab, shard="mc1001", lab_subnet=LAB_SUBNET, client_router="mw1001")
    assert plan["client"]["host"] == "mw1001"
    assert plan["client"]["router"]["address"] == "127.0.0.1"


def test_a_client_router_of_another_datacentre_or_no_router_is_refused(lab):
    plan = plan_drill(*lab, shard="mc1001", lab_subnet=LAB_SUBNET, client_router="mw2001")
    assert plan["targets"] == []
    assert plan["problems"] == ["mcfleet_client_router=mw2001: not a router of eqiad (its routers: mw1001)"]


def test_flush_is_refused_when_the_client_runs_on_a_blocked_app_server(eqiad):
    plan = plan_drill(*eqiad, shard="all", policy="flush")
    assert plan["targets"] == []
    assert plan["problems"][0].startswith("rejoin_policy=flush: the drill's client runs on ")


def test_describe_targets_lists_shards_in_order_with_router_and_blocked_clients():
    from ansible_collections.mcfleet.fleet.plugins.module_utils.drill_plan import describe_targets
    from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
    from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import small_fleet

    model = build_topology(*small_fleet())
    lines = describe_targets(model, ["mc2002", "mc2001"])
    tail = "(codfw, port 11211): traffic through mw2001 10.0.2.20:11213; blocked for 10.0.2.20, 10.0.2.30"
    assert lines == [f"1. mc2002 {tail}", f"2. mc2001 {tail}"]


def lab_model():
    from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
    from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import inventory_data

    groups, hostvars = inventory_data("lab")
    return build_topology(groups, hostvars), groups["all"]


def test_proxy_drill_blocks_one_proxy_for_the_other_datacentres_routers_and_proxies():
    from ansible_collections.mcfleet.fleet.plugins.module_utils.drill_plan import plan_proxy_drill

    model, hosts = lab_model()
    plan = plan_proxy_drill(model, hosts, target="mwproxy2001", lab_subnet="10.89.213.0/24")
    assert plan["problems"] == []
    assert plan["targets"] == ["mwproxy2001"]
    assert plan["datacentre"] == "codfw"
    assert plan["writer"] == "mw1001"
    assert plan["sources"] == ["10.89.213.15", "10.89.213.16", "10.89.213.17"]
    every = plan_proxy_drill(
        model, hosts, target="all-proxies", datacentre="codfw", lab_subnet="10.89.213.0/24"
    )
    assert every["targets"] == ["mwproxy2001", "mwproxy2002"]


def test_proxy_drill_refuses_a_target_that_is_not_a_proxy_or_not_in_the_inventory():
    from ansible_collections.mcfleet.fleet.plugins.module_utils.drill_plan import plan_proxy_drill

    model, hosts = lab_model()
    assert plan_proxy_drill(model, hosts, target="mc2001", lab_subnet="x")["problems"] == [
        "drill_target=mc2001: not a cross-datacentre proxy (its pool is main)"
    ]
    assert plan_proxy_drill(model, hosts, target="mwproxy9009", lab_subnet="x")["problems"] == [
        "drill_target=mwproxy9009: no such host in this inventory"
    ]
    refused = plan_proxy_drill(model, hosts, target="all-proxies", rollback_s="0")
    assert refused["targets"] == []
    assert refused["problems"] == [
        "drill_datacentre=(not set): drill_target=all-proxies needs a datacentre of this inventory "
        "(codfw, eqiad)",
        "drill_rollback_s=0: must be a whole number of seconds from 1 to 86400",
        "lab_subnet: not set; a proxy drill sends its client traffic from the controller,"
        " only to a lab subnet or loopback",
    ]


def test_the_drills_knobs_get_defaults_and_each_bad_one_is_named(lab):
    plan = plan_drill(*lab, shard="mc2001", lab_subnet=LAB_SUBNET, hold_s="8", traffic_rate="")
    assert plan["knobs"] == {"baseline_s": 3, "hold_s": 8, "traffic_rate": 200, "traffic_max_s": 600}
    plan = plan_drill(
        *lab, shard="mc2001", lab_subnet=LAB_SUBNET, hold_s="0", traffic_rate="fast", traffic_max_s="5"
    )
    assert plan["targets"] == []
    assert plan["problems"] == [
        "drill_hold_s=0: must be a whole number from 1 to 3600",
        "drill_traffic_rate=fast: must be a whole number from 1 to 5000",
        "drill_traffic_max_s=5: shorter than the baseline and the hold (8 s);"
        " the traffic must outlast the drill",
    ]


def test_a_proxy_drills_knobs_are_checked_once(lab):
    from ansible_collections.mcfleet.fleet.plugins.module_utils.drill_plan import plan_proxy_drill

    plan = plan_proxy_drill(*lab, target="mwproxy2001", lab_subnet=LAB_SUBNET, proxy_traffic_s="")
    assert plan["knobs"] == {"proxy_traffic_s": 10, "replicated_count": 100}
    plan = plan_proxy_drill(*lab, target="mwproxy2001", lab_subnet=LAB_SUBNET, replicated_count="-1")
    assert plan["targets"] == []
    assert plan["problems"] == ["drill_replicated_count=-1: must be a whole number from 1 to 100000"]
