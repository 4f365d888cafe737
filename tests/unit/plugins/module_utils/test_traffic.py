"""The traffic generator against real memcached on loopback: bounds, refusals, timeline."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import MemcacheClient
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import (
    TrafficError,
    check_plan,
    default_plan,
    load_timeline,
    per_second,
    plan_problems,
    run,
)
from ansible_collections.mcfleet.fleet.plugins.modules import traffic as traffic_module
from ansible_collections.mcfleet.fleet.tests.unit.failover_fixtures import MemcachedProcess


@pytest.fixture
def server():
    proc = MemcachedProcess()
    yield proc
    proc.stop()


def plan_for(server: MemcachedProcess, tmp_path: Path, **overrides) -> dict:
    endpoint = {"address": "127.0.0.1", "port": server.port}
    settings = {
        "router": endpoint,
        "gutter": [endpoint],
        "timeline": str(tmp_path / "traffic.jsonl"),
        "max_requests": 100_000,
        "max_duration_s": 2.0,
        "rate_per_s": 300,
        "seed": 7,
    }
    return default_plan(**{**settings, **overrides})


def test_refuses_addresses_outside_loopback_and_the_lab(tmp_path):
    timeline = tmp_path / "t.jsonl"
    plan = default_plan(
        router={"address": "192.0.2.2", "port": 11213}, timeline=str(timeline), max_duration_s=1
    )
    with pytest.raises(TrafficError, match=r"refusing to send traffic to 192\.0\.2\.2"):
        run(plan)
    assert not timeline.exists()
    lab = default_plan(router={"address": "10.89.213.15", "port": 11213}, timeline=str(timeline))
    with pytest.raises(TrafficError, match="refusing"):
        check_plan(lab)
    assert check_plan({**lab, "allowed_networks": ["10.89.213.0/24"]})["router"] == ("10.89.213.15", 11213)
    # A gutter outside the lab is refused too; so is a name resolving outside.
    with pytest.raises(TrafficError, match="refusing"):
        check_plan(
            {**lab, "allowed_networks": ["10.89.213.0/24"], "gutter": [{"address": "10.0.0.1", "port": 1}]}
        )
    assert check_plan({**lab, "router": {"address": "localhost", "port": 1}})["router"][0] in (
        "127.0.0.1",
        "::1",
    )


def test_bounds_are_mandatory_and_capped():
    problems = plan_problems(default_plan(max_requests=0, max_duration_s=90000, rate_per_s=-1, set_ratio=2))
    assert len(problems) == 4
    assert any(p.startswith("max_requests") for p in problems)
    assert any(p.startswith("max_duration_s") and "86400" in p for p in problems)
    unknown_engine = default_plan(router={"address": "127.0.0.1", "port": 1, "engine": "twemproxy"})
    assert any("router engine" in p and "twemproxy" in p for p in plan_problems(unknown_engine))


def test_gets_through_a_memcached_proxy_router_use_meta_and_hit(server, tmp_path):
    endpoint = {"address": "127.0.0.1", "port": server.port}
    before = int(MemcacheClient(*server.spec).stats()["cmd_get"])
    plan = plan_for(server, tmp_path, router={**endpoint, "engine": "memcached_proxy"}, max_duration_s=1.0)
    summary = run(plan)
    assert summary["client_errors"] == 0
    requests = load_timeline(summary["timeline"])["requests"]
    gets = [r for r in requests if r["op"] == "get"]
    assert any(r["r"] == "ok" for r in gets)
    # One request per get reached memcached: memcached counts an mg as one cmd_get.
    assert int(MemcacheClient(*server.spec).stats()["cmd_get"]) - before == len(gets)


def test_paced_run_records_every_request_and_gutter_hits(server, tmp_path):
    summary = run(plan_for(server, tmp_path))
    assert summary["stop_reason"] == "max_duration_s"
    # Ended by its 2 s bound, not before; how much later (and how many requests made it) is
    # the machine's speed, so only the bound is checked (make test runs this beside Molecule).
    assert 1.9 <= summary["duration_s"] < 10
    # Paced at 300/s for 2 s: never more than due.
    assert 0 < summary["requests"] <= 601
    assert summary["client_errors"] == 0
    timeline = load_timeline(summary["timeline"])
    assert len(timeline["requests"]) == summary["requests"]
    assert timeline["end"]["stop_reason"] == "max_duration_s"
    gets_hit = sum(1 for r in timeline["requests"] if r["op"] == "get" and r["r"] == "ok")
    sets = sum(1 for r in timeline["requests"] if r["op"] == "set")
    assert 0.2 < sets / summary["requests"] < 0.4
    rows = per_second(timeline)
    # The "gutter" here is the same memcached, so its counter deltas are exactly our hits.
    assert sum(row["gutter_hits"] for row in rows) == gets_hit > 0
    assert sum(row["requests"] for row in rows) == summary["requests"]
    assert all(row["p99_ms"] >= row["p50_ms"] for row in rows if row["requests"])
    assert int(MemcacheClient(*server.spec).stats()["cmd_set"]) == sets


def test_stop_file_and_request_bound(server, tmp_path):
    stop = tmp_path / "stop"
    threading.Timer(0.5, stop.touch).start()
    summary = run(plan_for(server, tmp_path, stop_file=str(stop), max_duration_s=10))
    # The stop file, not the 10 s bound, ended it (the margin is for a loaded machine).
    assert summary["stop_reason"] == "stop_file" and summary["duration_s"] < 8
    summary = run(plan_for(server, tmp_path, max_requests=50, rate_per_s=1000))
    assert summary["requests"] == 50 and summary["stop_reason"] == "max_requests"


def test_stalled_router_shows_as_timeouts(server, tmp_path):
    MemcacheClient(*server.spec).version()
    server.pause()
    try:
        started = time.monotonic()
        summary = run(plan_for(server, tmp_path, gutter=[], timeout_s=0.3, max_duration_s=1.5))
    finally:
        server.resume()
    # Bounded by max_duration_s, not by the stalled server (generous for a loaded machine).
    assert time.monotonic() - started < 10
    assert summary["outcomes"]["timeout"] == summary["requests"] > 0
    assert summary["latency_ms"]["p50"] >= 300


def run_module(capsys, args: dict, check_mode: bool = False) -> tuple[int, dict]:
    if check_mode:
        args = {**args, "_ansible_check_mode": True}
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        traffic_module.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


def test_module_check_mode_sends_nothing_and_refuses_outside(server, tmp_path, capsys):
    args = {
        "router": {"address": "127.0.0.1", "port": server.port},
        "timeline": str(tmp_path / "t.jsonl"),
        "max_requests": 100,
        "max_duration_s": 5,
    }
    code, out = run_module(capsys, args, check_mode=True)
    assert code == 0 and out["changed"] and out["plan"]["resolved"]["router"] == ["127.0.0.1", server.port]
    assert not (tmp_path / "t.jsonl").exists()
    assert MemcacheClient(*server.spec).stats()["cmd_set"] == "0"
    code, out = run_module(capsys, {**args, "router": {"address": "192.0.2.2", "port": 11213}})
    assert code == 1 and "refusing" in out["msg"]
    code, out = run_module(capsys, {**args, "max_duration_s": 0})
    assert code == 1 and "max_duration_s" in out["msg"]
    code, out = run_module(capsys, {**args, "rate_per_s": 1000})
    assert code == 0 and out["requests"] == 100 and out["changed"]


def test_traffic_errors_counts_a_real_timeline_in_a_window(server, tmp_path, capsys):
    """The gate's module reads the timeline where the traffic ran; its window splits it."""
    from ansible_collections.mcfleet.fleet.plugins.modules import traffic_errors

    summary = run(plan_for(server, tmp_path, max_duration_s=1.0, rate_per_s=200))
    server.stop()  # every request after this is a client error
    stopped_at = time.time()
    # since_s is counted back from the module's own clock, read a moment after this test
    # reads its own (milliseconds on a loaded machine): the window then starts a little after
    # stopped_at. A pause keeps the first failing request clear of that edge; without it the
    # first failing request comes about a millisecond after stopped_at and may fall outside.
    time.sleep(0.5)
    failing = run(plan_for(server, tmp_path, timeline=str(tmp_path / "failing.jsonl"), max_duration_s=0.5))
    # One timeline: the healthy second, then the half second against a dead router.
    with open(tmp_path / "both.jsonl", "w", encoding="utf-8") as both:
        for name in ("traffic.jsonl", "failing.jsonl"):
            both.write((tmp_path / name).read_text(encoding="utf-8"))

    def count(**window):
        args = {"timeline": str(tmp_path / "both.jsonl"), "_ansible_check_mode": True, **window}
        with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
            traffic_errors.main()
        assert exit_info.value.code == 0
        return json.loads(capsys.readouterr().out)

    everything = count()
    assert everything["requests"] == summary["requests"] + failing["requests"]
    assert everything["errors"] == failing["client_errors"] > 0
    assert everything["changed"] is False
    before = count(end=stopped_at)
    assert before == {**before, "requests": summary["requests"], "errors": 0, "error_rate": 0.0}
    recent = count(since_s=time.time() - stopped_at)
    assert recent["errors"] == recent["requests"] == failing["requests"]


def test_traffic_errors_names_an_unreadable_timeline(tmp_path, capsys):
    from ansible_collections.mcfleet.fleet.plugins.modules import traffic_errors

    missing = tmp_path / "none.jsonl"
    with patch_module_args({"timeline": str(missing)}), pytest.raises(SystemExit) as exit_info:
        traffic_errors.main()
    result = json.loads(capsys.readouterr().out)
    assert exit_info.value.code == 1
    assert result["msg"].startswith(f"timeline={missing}: cannot read the traffic timeline")


def test_deletes_join_the_mix_and_a_consistent_cache_reads_nothing_stale(server, tmp_path):
    summary = run(plan_for(server, tmp_path, delete_ratio=0.2, key_count=20, max_duration_s=1.0))
    requests = load_timeline(summary["timeline"])["requests"]
    assert {r["op"] for r in requests} == {"set", "delete", "get"}
    assert (summary["stale_reads"], summary["resurrected_reads"]) == (0, 0)
    assert not any("v" in r for r in requests)


def test_a_value_changed_behind_the_client_is_a_stale_read(server, tmp_path):
    stop = threading.Event()

    def rewind_every_key():
        # As a shard that comes back with what it held before: older values, deleted keys.
        with MemcacheClient(*server.spec) as client:
            while not stop.is_set():
                for index in range(5):
                    client.set(f"/eqiad/mw/mcfleet-traffic-rewind-{index}", "0:old")
                time.sleep(0.01)

    rewinder = threading.Thread(target=rewind_every_key)
    rewinder.start()
    try:
        summary = run(
            plan_for(server, tmp_path, run_id="rewind", delete_ratio=0.2, key_count=5, max_duration_s=1.0)
        )
    finally:
        stop.set()
        rewinder.join()
    assert summary["stale_reads"] + summary["resurrected_reads"] > 0
    assert plan_problems(default_plan(router={"address": "127.0.0.1", "port": 1}, delete_ratio=0.8)) == [
        "delete_ratio must be in [0, 1 - set_ratio], got 0.8"
    ]
