"""mcfleet_failover_verify's main(): arguments, check mode, state file, changed, failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import MemcacheClient
from ansible_collections.mcfleet.fleet.plugins.modules import failover_verify as failover_verify_module
from ansible_collections.mcfleet.fleet.tests.unit.failover_fixtures import GUTTER_TTL_S, Fleet


@pytest.fixture
def fleet():
    fleet = Fleet()
    yield fleet
    fleet.close()


def call(capsys, args: dict, check_mode: bool = False) -> tuple[int, dict]:
    """Runs main() as Ansible does; returns (exit code, the JSON result it printed)."""
    if check_mode:
        args = {**args, "_ansible_check_mode": True}
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        failover_verify_module.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


def base_args(fleet: Fleet, state_file: Path) -> dict:
    topo = fleet.topology()
    return {
        "router": topo["router"],
        "route_prefix": topo["route_prefix"],
        "shards": topo["shards"],
        "gutter": topo["gutter"],
        "state_file": str(state_file),
        "canaries": 60,
        "_ansible_diff": True,
    }


def test_check_mode_reads_only_and_says_what_it_would_write(fleet, tmp_path, capsys):
    state_file = tmp_path / "verify.json"
    code, out = call(capsys, {**base_args(fleet, state_file), "phase": "before"}, check_mode=True)
    assert code == 0
    assert out["changed"] is True and out["would_write"] == 60 and out["written"] == 0
    assert "canary writes: 60" in out["diff"]["after"]
    assert not state_file.exists()
    assert MemcacheClient(*fleet.shards[0].spec).stats()["curr_items"] == "0"
    # Later phases in a dry run have no state to read: they say so instead of failing.
    code, out = call(
        capsys, {**base_args(fleet, state_file), "phase": "after", "gutter_ttl_s": 2}, check_mode=True
    )
    assert code == 0 and "no state" in out["msg"]


def test_full_drill_through_the_module(fleet, tmp_path, capsys):
    state_file = tmp_path / "verify.json"
    args = base_args(fleet, state_file)
    code, out = call(capsys, {**args, "phase": "before"})
    assert code == 0 and out["changed"] and out["ok"] and out["lost"] == 0
    assert json.loads(state_file.read_text())["phases"]["before"]["written"] == 60

    fleet.links[1].block("reject")
    code, out = call(
        capsys,
        {
            **args,
            "phase": "during",
            "blocked_shard": "mc1002",
            "rejoin_policy": "keep",
            "failover_timeout_s": 10,
        },
    )
    fleet.links[1].unblock()
    assert code == 0, out.get("msg")
    assert out["on_gutter"] > 0 and out["untouched_elsewhere"] > 0 and out["lost"] == 0

    code, out = call(
        capsys, {**args, "phase": "after", "gutter_ttl_s": GUTTER_TTL_S, "readmission_timeout_s": 10}
    )
    assert code == 0, out.get("msg")
    assert out["stale_after_rejoin"] > 0 and out["gutter_expired_within_ttl"] is True


def test_violations_fail_the_task_but_keep_the_state(fleet, tmp_path, capsys):
    state_file = tmp_path / "verify.json"
    args = base_args(fleet, state_file)
    assert call(capsys, {**args, "phase": "before"})[0] == 0
    # No block at all: the router never fails over, so "during" must fail, clearly.
    code, out = call(
        capsys,
        {
            **args,
            "phase": "during",
            "blocked_shard": "mc1001",
            "rejoin_policy": "keep",
            "failover_timeout_s": 1,
        },
    )
    assert code == 1
    assert "did not fail mc1001's keys over to the gutter" in out["msg"]
    assert "during" in json.loads(state_file.read_text())["phases"]


def test_bad_arguments_are_refused(fleet, tmp_path, capsys):
    args = base_args(fleet, tmp_path / "verify.json")
    code, out = call(capsys, {**args, "phase": "during"})
    assert code == 1 and "blocked_shard" in out["msg"]
    code, out = call(capsys, {**args, "phase": "sideways"})
    assert code == 1 and "phase" in out["msg"]
    code, out = call(capsys, {**args, "phase": "during", "blocked_shard": "mc1001", "rejoin_policy": "keep"})
    assert code == 1 and "needs the state" in out["msg"]
