"""Drill reports: figures from a timeline, files that parse, and a whole drill on loopback."""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mcfleet.fleet.plugins.module_utils.charts import write_files
from ansible_collections.mcfleet.fleet.plugins.module_utils.drill_report import build_report, render_files
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import default_plan, run
from ansible_collections.mcfleet.fleet.plugins.modules import drill_report as drill_report_module
from ansible_collections.mcfleet.fleet.tests.unit.chart_checks import check_chart
from ansible_collections.mcfleet.fleet.tests.unit.failover_fixtures import GUTTER_TTL_S, Fleet


def write_timeline(
    path: Path, t0: float, requests: list[tuple[float, float, str]], gutter: list[tuple]
) -> None:
    """requests: (offset_s, latency_ms, outcome); gutter: (offset_s, get_hits, get_misses)."""
    lines = [{"kind": "start", "t": t0, "plan": {}}]
    for offset, ms, outcome in requests:
        lines.append({"kind": "req", "t": t0 + offset, "op": "get", "k": 0, "ms": ms, "r": outcome})
    for offset, hits, misses in gutter:
        lines.append(
            {"kind": "gutter", "t": t0 + offset, "get_hits": hits, "get_misses": misses, "cmd_set": 0}
        )
    lines.append({"kind": "end", "t": t0 + 30, "requests": len(requests), "stop_reason": "stop_file"})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_figures_follow_the_timeline(tmp_path):
    t0 = 1_800_000_000.0
    # 10 s before the block at 1 ms; 10 s of block: errors in its first 2 s, then slow
    # successes; 10 s after at 2 ms. The gutter's counters move only during the block.
    before = [(i * 0.1, 1.0, "ok") for i in range(100)]
    during = [
        (10 + i * 0.1, 1000.0 if i < 20 else 5.0 + i % 7, "timeout" if i < 20 else "ok") for i in range(100)
    ]
    after = [(20 + i * 0.1, 2.0, "ok" if i % 4 else "miss") for i in range(100)]
    gutter = [(s, max(0, s - 11) * 40, max(0, s - 10) * 10) for s in range(0, 31)]
    timeline = tmp_path / "t.jsonl"
    write_timeline(timeline, t0, before + during + after, gutter)
    verify = {
        "before": {"lost": 0, "violations": []},
        "during": {"lost": 0, "time_to_failover_s": 2.1, "on_gutter": 5, "violations": []},
        "after": {"lost": 0, "stale_after_rejoin": 3, "violations": [], "readmitted_at": t0 + 23},
    }
    events = {"started_at": t0, "blocked_at": t0 + 10, "unblocked_at": t0 + 20}
    drill = {
        "drill_id": "d1",
        "shard": "mc1001",
        "mode": "drop",
        "rejoin_policy": "keep",
        "datacentre": "eqiad",
    }
    report, rows = build_report(drill, str(timeline), verify, events, rules_left=0)

    assert report["requests"] == 300
    assert report["client_errors"] == report["client_errors_during_block"] == 20
    assert report["outcomes"]["miss"] == 25
    assert report["latency_ms"]["before"] == {"requests": 100, "p50": 1.0, "p99": 1.0, "max": 1.0}
    during_ms = sorted(ms for _at, ms, _outcome in during)
    assert report["latency_ms"]["during"]["p50"] == during_ms[49]  # nearest rank of 100 values
    assert report["latency_ms"]["during"]["max"] == 1000.0
    assert report["latency_ms"]["after"]["p99"] == 2.0
    # Last failed request started at +11.9 s and took 1 s.
    assert report["client_error_free_after_s"] == pytest.approx(2.9, abs=1e-3)
    assert report["time_to_failover_s"] == 2.1
    # Gutter counters from the last sample at/before the block to the last one inside it (+1 s).
    hits, misses = (21 - 11) * 40 - 0, (21 - 10) * 10 - 0
    assert report["gutter_hit_ratio"] == round(hits / (hits + misses), 4)
    assert report["stale_after_rejoin"] == 3 and report["rules_left"] == 0 and report["ok"]
    # ISO 8601 in UTC with milliseconds, the fraction before the "Z".
    assert report["timestamps"]["readmitted_at"] == "2027-01-15T08:00:23.000Z"
    assert len(rows) == 31 and rows[12]["timeouts"] == 0 and rows[11]["timeouts"] == 10
    assert rows[5]["p50_ms"] == statistics.median([1.0] * 10)

    files = render_files(report, rows)
    assert set(files) == {"d1.json", "d1.md", "d1.png", "d1.svg"}
    ids, texts = check_chart(files, "d1", files["d1.md"])
    # errors, p50, p99 and gutter hits drawn; block, unblock and readmission marked on each panel
    assert {"series-errors/s", "series-p50", "series-p99", "series-gutter hits/s"} <= ids
    assert {
        f"marker-{name}-{panel}" for name in ("blocked", "unblocked", "readmitted") for panel in range(3)
    } <= ids
    assert {"blocked", "unblocked", "readmitted", "client latency, ms", "gutter get hits/s"} <= texts
    assert "| `client_errors` | 20 |" in files["d1.md"]
    assert json.loads(files["d1.json"])["gutter_hit_ratio"] == report["gutter_hit_ratio"]

    rules_left, _report = build_report(drill, str(timeline), verify, events, rules_left=1)
    assert rules_left["ok"] is False


def test_whole_drill_on_loopback(tmp_path):
    """Traffic through the failover router while a shard is blocked, verified, reported."""
    fleet = Fleet()
    try:
        topo = fleet.topology()
        stop = tmp_path / "stop"
        plan = default_plan(
            router=topo["router"],
            gutter=topo["gutter"],
            timeline=str(tmp_path / "traffic.jsonl"),
            stop_file=str(stop),
            max_requests=20_000,
            max_duration_s=60,
            rate_per_s=300,
            timeout_s=1.0,
        )
        traffic: dict = {}
        worker = threading.Thread(target=lambda: traffic.update(run(plan)))
        worker.start()
        verifier = fleet.verifier()
        before, state = verifier.before(canaries=60)
        time.sleep(1)
        blocked_at = time.time()
        fleet.links[0].block("reject")
        during, state = verifier.during(
            state, "mc1001", "flush", blocked_at=blocked_at, failover_timeout_s=10
        )
        time.sleep(2)
        unblocked_at = time.time()
        fleet.links[0].unblock()
        after, state = verifier.after(state, gutter_ttl_s=GUTTER_TTL_S, readmission_timeout_s=10)
        stop.touch()
        worker.join(timeout=10)
        verifier.close()
    finally:
        fleet.close()

    assert traffic["stop_reason"] == "stop_file"
    drill = {"drill_id": "loopback-drill", "shard": "mc1001", "mode": "reject", "rejoin_policy": "flush"}
    events = {"blocked_at": blocked_at, "unblocked_at": unblocked_at}
    report, rows = build_report(
        drill, plan["timeline"], {"before": before, "during": during, "after": after}, events, rules_left=0
    )
    assert report["ok"], report["verify_violations"]
    assert report["requests"] == traffic["requests"] > 500
    assert report["lost"] == 0 and report["stale_after_rejoin"] == 0
    assert report["gutter_hit_ratio"] is not None and report["gutter_hit_ratio"] > 0
    assert report["gutter_hits_during_block"] > 0
    assert report["latency_ms"]["during"]["requests"] > 0
    # Reject mode with a router that marks TKO on the first failure: at most a handful of errors.
    assert report["client_errors_during_block"] <= 5
    paths = write_files(str(tmp_path / "reports"), render_files(report, rows))
    assert sorted(Path(p).suffix for p in paths) == [".json", ".md", ".png", ".svg"]
    ids, _texts = check_chart(
        tmp_path / "reports", "loopback-drill", (tmp_path / "reports" / "loopback-drill.md").read_text()
    )
    assert {"series-errors/s", "marker-blocked-0", "marker-unblocked-0"} <= ids


def test_module_writes_once_and_is_idempotent(tmp_path, capsys):
    t0 = 1_800_000_000.0
    timeline = tmp_path / "t.jsonl"
    write_timeline(timeline, t0, [(i * 0.5, 1.0, "ok") for i in range(40)], [(0, 0, 0), (20, 10, 0)])
    args = {
        "drill_id": "m1",
        "drill": {"shard": "mc1001", "mode": "reject", "rejoin_policy": "flush"},
        "timeline": str(timeline),
        "verify": {"after": {"lost": 0, "stale_after_rejoin": 0, "violations": []}},
        "events": {"blocked_at": t0 + 5, "unblocked_at": t0 + 15},
        "rules_left": 0,
        "report_dir": str(tmp_path / "reports"),
    }

    def call(extra: dict) -> tuple[int, dict]:
        with patch_module_args({**args, **extra}), pytest.raises(SystemExit) as exit_info:
            drill_report_module.main()
        return exit_info.value.code, json.loads(capsys.readouterr().out)

    code, out = call({"_ansible_check_mode": True, "_ansible_diff": True})
    assert code == 0 and out["changed"] and not (tmp_path / "reports").exists()
    assert '"rules_left": 0' in out["diff"]["after"]
    code, out = call({})
    assert code == 0 and out["changed"] and all(Path(p).exists() for p in out["paths"])
    assert sorted(Path(p).suffix for p in out["paths"]) == [".json", ".md", ".png", ".svg"]
    check_chart(tmp_path / "reports", "m1", (tmp_path / "reports" / "m1.md").read_text())
    # The same inputs draw the same PNG and SVG bytes: a second run changes nothing.
    code, out = call({})
    assert code == 0 and not out["changed"]
    code, out = call({"drill_id": "../escape"})
    assert code == 1 and "plain file name" in out["msg"]
