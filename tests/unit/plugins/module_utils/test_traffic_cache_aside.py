"""The LRU comparison's load (traffic.run_cache_aside) against real memcached on loopback:
Zipf-skewed keys, a set after every miss, bounds, refusals."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import (
    TrafficError,
    default_load_plan,
    load_plan_problems,
    run_cache_aside,
    value_bytes_of,
    zipf_cumulative,
    zipf_index,
)
from ansible_collections.mcfleet.fleet.plugins.modules import traffic as traffic_module
from ansible_collections.mcfleet.fleet.tests.unit.failover_fixtures import MemcachedProcess


@pytest.fixture
def server():
    proc = MemcachedProcess(memory_mb=4)
    yield proc
    proc.stop()


def test_zipf_ranks_follow_the_law():
    cumulative = zipf_cumulative(1000, 1.0)
    harmonic = sum(1 / k for k in range(1, 1001))
    draws = Counter(zipf_index(cumulative, (i + 0.5) / 100_000) for i in range(100_000))
    # P(rank 1) = 1/H(1000), P(rank 2) = P(rank 1)/2 (quantiles of [0, 1), so exact to rounding).
    assert draws[0] / 100_000 == pytest.approx(1 / harmonic, abs=1e-3)
    assert draws[1] / draws[0] == pytest.approx(0.5, abs=0.01)
    assert zipf_index(cumulative, 0.999999) == 999
    uniform = Counter(zipf_index(zipf_cumulative(10, 0.0), (i + 0.5) / 1000) for i in range(1000))
    assert set(uniform.values()) == {100}


def test_value_sizes_are_fixed_per_key_and_spread_between_the_bounds():
    sizes = [value_bytes_of(i, 100, 4000) for i in range(5000)]
    assert sizes == [value_bytes_of(i, 100, 4000) for i in range(5000)]
    assert min(sizes) >= 100 and max(sizes) <= 4000
    # Log-uniform: as many keys below the geometric middle (632 bytes) as above it.
    below = sum(1 for size in sizes if size < (100 * 4000) ** 0.5)
    assert 0.45 < below / len(sizes) < 0.55


def test_cache_aside_load_hits_skewed_keys_and_sets_every_miss(server, tmp_path):
    plan = default_load_plan(
        router={"address": "127.0.0.1", "port": server.port, "engine": "memcached_proxy"},
        route_prefix="",
        key_count=20_000,
        zipf_s=1.0,
        value_bytes_min=100,
        value_bytes_max=2000,
        threads=2,
        rate_per_s=20_000,
        max_requests=12_000,
        max_duration_s=60,
        timeline=str(tmp_path / "load.jsonl"),
        run_id="t",
        seed=7,
    )
    summary = run_cache_aside(plan)
    assert summary["stop_reason"] == "max_requests" and summary["errors"] == 0
    assert summary["gets"] == 12_000 and summary["hits"] + summary["misses"] == summary["gets"]
    assert summary["sets"] == summary["misses"]
    # Popular keys come back: far more hits than a uniform draw over 20,000 keys would give.
    assert 0.3 < summary["hit_ratio"] < 0.95
    lines = [json.loads(line) for line in (tmp_path / "load.jsonl").read_text().splitlines()]
    assert lines[0]["kind"] == "start" and lines[-1]["kind"] == "end"
    assert lines[-1]["gets"] == summary["gets"]


def test_bad_load_plans_are_refused_and_nothing_is_sent(server, tmp_path):
    plan = default_load_plan(
        router={"address": "127.0.0.1", "port": server.port},
        timeline=str(tmp_path / "load.jsonl"),
        zipf_s=3.0,
        threads=20,
        value_bytes_min=500,
        value_bytes_max=100,
    )
    problems = load_plan_problems(plan)
    assert "zipf_s must be in [0.0, 2.0], got 3.0" in problems
    assert "threads must be in [1, 8], got 20" in problems
    assert "key_count must be in [1, 2000000], got 3000000" in load_plan_problems(
        {**plan, "key_count": 3_000_000}
    )
    assert "value_bytes_min/max must satisfy 1 <= min <= max, got 500/100" in problems
    with pytest.raises(TrafficError, match="zipf_s"):
        run_cache_aside(plan)
    assert not (tmp_path / "load.jsonl").exists()


def test_the_module_runs_the_cache_aside_pattern(server, tmp_path, capsys):
    args = {
        "pattern": "cache_aside",
        "router": {"address": "127.0.0.1", "port": server.port},
        "route_prefix": "/eqiad/mw/",
        "timeline": str(tmp_path / "load.jsonl"),
        "key_count": 150_000,  # above the mixed traffic's 100,000: the load's own bound applies
        "rate_per_s": 5000,
        "max_requests": 1000,
        "max_duration_s": 30,
        "threads": 2,
    }
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        traffic_module.main()
    out = json.loads(capsys.readouterr().out)
    assert exit_info.value.code == 0 and out["changed"], out
    assert out["gets"] == 1000 and out["key_count"] == 150_000
    with patch_module_args({**args, "zipf_s": -1.0}), pytest.raises(SystemExit) as exit_info:
        traffic_module.main()
    out = json.loads(capsys.readouterr().out)
    assert exit_info.value.code == 1 and "zipf_s must be in [0.0, 2.0], got -1.0" in out["msg"]
