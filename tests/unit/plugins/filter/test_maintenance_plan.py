"""What a rolling maintenance plans and refuses, before any host changes (maintenance_plan.py)."""

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils.maintenance_plan import (
    gutter_room,
    live_problems,
    plan_maintenance,
    reimage_argv,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import small_fleet

CODFW = ["mc2001", "mc2002", "mc2003", "mc-gp2001", "mw2001"]


@pytest.fixture(name="model")
def fixture_model():
    return build_topology(*small_fleet())


def test_a_restart_of_one_datacentre_is_planned_shard_by_shard_then_the_gutter(model):
    plan = plan_maintenance(model, CODFW, reason="T1", action="restart")
    assert plan["problems"] == []
    assert plan["datacentre"] == "codfw"
    assert plan["batches"] == [["mc2001"], ["mc2002"], ["mc2003"]]
    assert plan["gutter"] == ["mc-gp2001"]


def test_the_window_knobs_are_validated_once_and_the_lock_lives_on_a_router(model):
    plan = plan_maintenance(
        model, CODFW, reason="T1", action="upgrade", target_release="trixie", rollback_s="240"
    )
    assert plan["problems"] == []
    assert (plan["rollback_s"], plan["lock_ttl_s"]) == (240, 300)
    assert plan["lock_host"] == "mw2001"
    assert plan["target_major"] == "13"
    # The traffic outlasts every host's window: 4 hosts of 900 s, and the run's own steps.
    assert plan["traffic_max_s"] == 4 * 900 + 600


def test_batches_hold_batch_size_shards(model):
    plan = plan_maintenance(model, CODFW, reason="T1", batch_size="2")
    assert plan["batches"] == [["mc2001", "mc2002"], ["mc2003"]]


@pytest.mark.parametrize(
    ("choices", "refusal"),
    [
        ({"reason": ""}, "maintenance_reason: required"),
        ({"action": "reboot"}, "maintenance_action=reboot: not one of restart, upgrade"),
        ({"action": "upgrade", "target_release": "forky"}, "target_release=forky: not one of"),
        (
            {"action": "upgrade", "target_release": "trixie", "method": "pxe"},
            "upgrade_method=pxe: not one of",
        ),
        ({"action": "upgrade", "target_release": "trixie", "method": "reimage"}, "reimage_command: required"),
        ({"batch_size": 5}, "batch_size=5: must be a whole number from 1 to 4"),
        ({"batch_size": "two"}, "batch_size=two"),
        ({"rollback_s": 0}, "maintenance_rollback_s=0: must be a whole number of seconds from 1 to 86400"),
        ({"rollback_s": "soon"}, "maintenance_rollback_s=soon"),
        (
            {"action": "upgrade", "target_release": "trixie", "rollback_s": 60},
            "maintenance_rollback_s=60: an upgrade needs at least 180 s",
        ),
        ({"gate_min_requests": 0}, "maintenance_gate_min_requests=0"),
        ({"traffic_rate": "fast"}, "maintenance_traffic_rate=fast"),
        ({"traffic_max_s": 5}, "maintenance_traffic_max_s=5"),
        (
            {"action": "upgrade", "target_release": "bullseye", "host_releases": {"mc2001": "bookworm"}},
            "target_release=bullseye: mc2001 runs bookworm, and a downgrade is not supported",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_the_value(model, choices, refusal):
    plan = plan_maintenance(model, CODFW, **{"reason": "T1", **choices})
    assert any(refusal in problem for problem in plan["problems"]), plan["problems"]
    assert plan["batches"] == []


def test_hosts_of_two_datacentres_are_refused(model):
    plan = plan_maintenance(model, [*CODFW, "mc1001"], reason="T1")
    assert any("maintenance runs one datacentre at a time" in p for p in plan["problems"])


def test_gutter_room_counts_the_largest_shards_of_a_batch():
    shards = {"mc1": 100, "mc2": 300, "mc3": 200}
    gutter = {"gp1": {"limit_maxbytes": 1000, "bytes": 600}}
    assert gutter_room(1, shards, gutter) is None
    refusal = gutter_room(2, shards, gutter)
    assert "the 2 largest shards hold 500 bytes, more than the gutter's 400 free bytes" in refusal


def test_gutter_room_per_server_uses_each_servers_share_of_the_batch():
    """Two gutter servers with 300 free bytes each: the pool has 600, but Ch3 can send every key
    of a shard to one gutter server (route_explain.gutter_shares)."""
    shards = {"mc1": 400, "mc2": 100, "mc3": 100}
    gutter = {"gp1": {"limit_maxbytes": 1000, "bytes": 700}, "gp2": {"limit_maxbytes": 1000, "bytes": 700}}
    assert gutter_room(1, shards, gutter) is None
    nested = {"mc1": {"gp1": 1.0}, "mc2": {"gp2": 1.0}, "mc3": {"gp1": 0.5, "gp2": 0.5}}
    refusal = gutter_room(1, shards, gutter, nested)
    assert refusal == (
        "batch_size=1: a gutter server cannot hold its part of a batch's keys (placed by the "
        "routers' hashing): gp1 would take 400 bytes (mc1 400) and has 300 free"
    )
    even = {shard: {"gp1": 0.5, "gp2": 0.5} for shard in shards}
    assert gutter_room(1, shards, gutter, even) is None
    # Spread evenly, the whole datacentre fits exactly, as the pooled check says.
    assert gutter_room(3, shards, gutter, even) is None
    assert gutter_room(3, shards, gutter) is None
    assert "gp1 would take 450 bytes (mc1 400, mc3 50) and has 300 free" in gutter_room(
        3, shards, gutter, nested
    )


def test_the_plan_carries_the_routers_gutter_shares(model):
    plan = plan_maintenance(model, CODFW, reason="T1")
    # One gutter server: every shard's keys go to it.
    assert plan["gutter_shares"] == {shard: {"mc-gp2001": 1.0} for shard in ("mc2001", "mc2002", "mc2003")}
    health = {host: {"running": True, "counters": {"bytes": 600, "limit_maxbytes": 1000}} for host in CODFW}
    assert live_problems(plan, health) == [
        "batch_size=1: a gutter server cannot hold its part of a batch's keys (placed by the routers' "
        "hashing): mc-gp2001 would take 600 bytes (mc2001 600) and has 400 free"
    ]


def test_live_problems_name_a_down_gutter_and_a_downgrade(model):
    plan = plan_maintenance(model, CODFW, reason="T1", action="upgrade", target_release="bookworm")
    health = {
        "mc2001": {"running": True, "release": "trixie", "counters": {"bytes": 10}},
        "mc2002": {"running": True, "release": "bookworm", "counters": {"bytes": 10}},
        "mc2003": {"running": True, "release": "bookworm", "counters": {"bytes": 10}},
        "mc-gp2001": {"running": False, "release": "bookworm"},
    }
    problems = live_problems(plan, health)
    assert "gutter server mc-gp2001 is down: its shards' traffic would have nowhere to go" in problems
    assert "target_release=bookworm: mc2001 runs trixie, and a downgrade is not supported" in problems


def test_the_reimage_command_gets_host_address_and_release():
    argv = reimage_argv(
        "lab/reimage.sh mcfleet-{host} {release} --ip {address}", "mc2001", "10.0.0.1", "trixie"
    )
    assert argv == ["lab/reimage.sh", "mcfleet-mc2001", "trixie", "--ip", "10.0.0.1"]
