"""The failover verifier against real memcached processes on loopback.

Three shards and one gutter are real memcached processes. The router is the small
failover router of tests/unit/failover_fixtures.py; a shard is "blocked" by cutting the link
between the router and that shard (reject: connections reset and refused; drop: bytes
swallowed), while the verifier still reaches every shard directly, as it does from the
controller when the block covers only the routers' addresses.
"""

from __future__ import annotations

import time

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils.failover_verify import (
    FailoverVerifier,
    VerifyError,
    canary_key,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import MemcacheClient
from ansible_collections.mcfleet.fleet.tests.unit.failover_fixtures import GUTTER_TTL_S, PREFIX, Fleet

CANARIES = 90


@pytest.fixture
def fleet():
    fleet = Fleet()
    yield fleet
    fleet.close()


def run_drill(fleet: Fleet, policy: str, mode: str = "reject", between=None) -> dict:
    """before → block mc1001 → during → unblock → after; returns the three results."""
    verifier = fleet.verifier()
    before, state = verifier.before(canaries=CANARIES)
    blocked_at = time.time()
    fleet.links[0].block(mode)
    during, state = verifier.during(state, "mc1001", policy, blocked_at=blocked_at, failover_timeout_s=10)
    if between:
        between(state)
    fleet.links[0].unblock()
    after, state = verifier.after(state, gutter_ttl_s=GUTTER_TTL_S, readmission_timeout_s=10)
    verifier.close()
    return {"before": before, "during": during, "after": after, "state": state}


def roles(state: dict, role: str) -> list[dict]:
    return [c for c in state["canaries"] if c.get("role") == role]


def test_before_places_every_canary_on_exactly_one_shard(fleet):
    verifier = fleet.verifier()
    result, state = verifier.before(canaries=CANARIES)
    assert result["ok"], result["violations"]
    assert (result["written"], result["acknowledged"], result["lost"]) == (CANARIES, CANARIES, 0)
    assert result["on_gutter"] == 0
    assert sum(result["homes"].values()) == CANARIES
    # Cross-check the placement with pymemcache reading each shard directly.
    from pymemcache.client.base import Client

    for shard in fleet.topology()["shards"]:
        mine = [c["key"] for c in state["canaries"] if c["home"] == shard["host"]]
        direct = Client(("127.0.0.1", shard["port"])).get_many(mine)
        assert len(direct) == len(mine) == result["homes"][shard["host"]] > 0


def test_reject_keep_policy_reports_stale_values_and_resurrected_deletes(fleet):
    drill = run_drill(fleet, "keep")
    during, after, state = drill["during"], drill["after"], drill["state"]
    updates, deletes = roles(state, "update"), roles(state, "delete")
    elsewhere = roles(state, "elsewhere")
    assert during["ok"], during["violations"]
    assert during["lost"] == 0
    assert during["on_gutter"] == len(updates) > 0
    assert during["untouched_elsewhere"] == len(elsewhere) > 0
    assert during["deleted_still_visible"] == 0
    # Within the verifier's own timeout (10 s here); how fast is a benchmark's question.
    assert 0 <= during["time_to_failover_s"] < 10
    # The verifier reached the blocked shard directly: its old values wait there.
    assert during["old_values_on_blocked_shard"] == len(updates) + len(deletes)
    assert after["readmitted"]
    # Keep policy: every updated canary of the blocked shard reads its old v1 again.
    assert after["stale_after_rejoin"] == len(updates)
    assert after["resurrected_deletes"] == len(deletes) > 0
    assert after["lost"] == 0
    assert after["gutter_expired_within_ttl"] is True
    assert after["ok"], after["violations"]  # stale values are reported, not a violation, under keep


def test_reject_flush_policy_leaves_nothing_stale(fleet):
    drill = run_drill(fleet, "flush")
    during, after, state = drill["during"], drill["after"], drill["state"]
    assert during["flushed"] is True
    assert after["readmitted"]
    assert after["stale_after_rejoin"] == 0
    assert after["resurrected_deletes"] == 0
    assert after["missing_after_rejoin"] == len(roles(state, "update"))
    assert after["lost"] == 0
    assert after["ok"], after["violations"]
    # Cleanup removed every canary through the router.
    assert after["cleaned_up"] == CANARIES
    keys = [c["key"] for c in state["canaries"]]
    for shard in fleet.shards:
        assert MemcacheClient(*shard.spec).get_many(keys) == {}


def test_drop_mode_fails_over_after_timeouts(fleet):
    drill = run_drill(fleet, "keep", mode="drop")
    during, after = drill["during"], drill["after"]
    assert during["ok"], during["violations"]
    # The router notices a dropped shard only after its backend timeout (0.3 s here).
    assert during["time_to_failover_s"] >= 0.3
    assert during["on_gutter"] == len(roles(drill["state"], "update"))
    assert after["readmitted"] and after["stale_after_rejoin"] > 0


def test_a_batch_checks_each_shard_on_its_own_canaries(fleet):
    # Two shards out at once: each one's failover is judged by its own canaries only.
    verifier = fleet.verifier()
    _before, state = verifier.before(canaries=CANARIES)
    fleet.links[0].block("reject")
    fleet.links[1].block("reject")
    try:
        alone, _state = verifier.during(
            {**state, "canaries": [dict(c) for c in state["canaries"]]},
            "mc1001",
            "keep",
            failover_timeout_s=10,
        )
        batch, batch_state = verifier.during(
            state, "mc1001", "keep", failover_timeout_s=10, also_out=("mc1002",)
        )
    finally:
        fleet.links[0].unblock()
        fleet.links[1].unblock()
        verifier.close()
    assert any("canaries of other shards are untouched" in v for v in alone["violations"])
    assert batch["ok"], batch["violations"]
    assert roles(batch_state, "other_out") and all(
        c["home"] == "mc1002" for c in roles(batch_state, "other_out")
    )
    assert batch["untouched_elsewhere"] == len(roles(batch_state, "elsewhere")) > 0


def test_lost_value_is_detected(fleet):
    def lose_one(state):
        # An acknowledged value of another shard vanishes behind the router's back.
        victim = roles(state, "elsewhere")[0]
        shard = next(s for s in fleet.topology()["shards"] if s["host"] == victim["home"])
        assert MemcacheClient("127.0.0.1", shard["port"]).delete(victim["key"])

    drill = run_drill(fleet, "flush", between=lose_one)
    assert drill["after"]["lost"] == 1
    assert not drill["after"]["ok"]
    assert any("lost" in v for v in drill["after"]["violations"])


def test_gutter_copies_without_a_ttl_cap_are_reported():
    fleet = Fleet(gutter_ttl_s=0)  # a router that forgets to cap the gutter TTL
    try:
        drill = run_drill(fleet, "flush")
    finally:
        fleet.close()
    after = drill["after"]
    assert after["gutter_expired_within_ttl"] is False
    assert after["gutter_copies_left"] == len(roles(drill["state"], "update"))
    assert any("gutter copies still present" in v for v in after["violations"])


def pause_drill(fleet: Fleet, policy: str) -> tuple[dict, dict, dict]:
    """SIGSTOP blocks everyone, the verifier too (like a block without `sources`)."""
    verifier = fleet.verifier(timeout_s=0.5)
    _before, state = verifier.before(canaries=CANARIES)
    fleet.shards[0].pause()
    try:
        during, state = verifier.during(state, "mc1001", policy, failover_timeout_s=10)
    finally:
        fleet.shards[0].resume()
    after, state = verifier.after(state, gutter_ttl_s=GUTTER_TTL_S, readmission_timeout_s=10)
    verifier.close()
    return during, after, state


def test_paused_shard_comes_back_with_stale_values(fleet):
    during, after, state = pause_drill(fleet, "keep")
    updates = roles(state, "update")
    assert during["on_gutter"] == len(updates)
    assert during["blocked_shard_reachable"] is False
    assert after["readmitted"]
    # The old v1 waited on the paused shard. (The probe's timed-out writes may have
    # landed late, once the shard resumed, so the probe may read newer or older.)
    assert len(updates) - 1 <= after["stale_after_rejoin"] <= len(updates)
    assert after["resurrected_deletes"] == len(roles(state, "delete"))


def test_flush_policy_fails_loudly_when_the_shard_is_out_of_reach(fleet):
    during, after, _state = pause_drill(fleet, "flush")
    assert during["flushed"] is False
    assert any("cannot flush mc1001" in v for v in during["violations"])
    assert not during["ok"]
    # Worth knowing: the flush_all that timed out sat in the paused shard's socket and
    # ran when it resumed, so nothing stale shows; the verifier still reported the
    # unconfirmed flush as a violation above.
    assert after["readmitted"]
    assert after["stale_after_rejoin"] == 0


def test_dry_run_writes_nothing(fleet):
    verifier = fleet.verifier(dry_run=True)
    result, state = verifier.before(canaries=CANARIES)
    assert result["would_write"] == CANARIES and result["written"] == 0
    assert set(result["servers"]) == {"127.0.0.1", "mc1001", "mc1002", "mc1003", "mc-gp1001"}
    for proc in [*fleet.shards, fleet.gutter]:
        assert MemcacheClient(*proc.spec).stats()["curr_items"] == "0"
    assert MemcacheClient(*fleet.router.spec).get(PREFIX + canary_key(state["run_id"], 0)) is None


def test_bad_input_is_refused_before_anything_is_written(fleet):
    verifier = fleet.verifier()
    with pytest.raises(VerifyError, match="needs the state"):
        verifier.during(None, "mc1001", "keep")
    _before, state = verifier.before(canaries=CANARIES)
    with pytest.raises(VerifyError, match="not a main shard"):
        verifier.during(state, "mc-gp1001", "keep")
    with pytest.raises(VerifyError, match="rejoin_policy"):
        verifier.during(state, "mc1001", "sometimes")
    with pytest.raises(VerifyError, match="needs phase 'during'"):
        verifier.after(state, gutter_ttl_s=2)
    with pytest.raises(VerifyError, match="at least 3 per shard"):
        verifier.before(canaries=3)
    with pytest.raises(VerifyError, match="route_prefix"):
        FailoverVerifier(**{**fleet.topology(), "route_prefix": "eqiad"})


def test_unprefixed_keys_take_the_routers_default_route(fleet):
    verifier = FailoverVerifier(**{**fleet.topology(), "route_prefix": ""})
    result, state = verifier.before(canaries=CANARIES)
    assert result["ok"], result["violations"]
    assert state["canaries"][0]["key"].startswith("mcfleet-canary-")
    verifier.close()
