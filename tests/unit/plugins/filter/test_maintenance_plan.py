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
