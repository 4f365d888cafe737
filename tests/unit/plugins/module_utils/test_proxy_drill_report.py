"""Proxy drill reports: figures and verdicts from timelines and replication results, files
that parse, a drill's local traffic on loopback, and the module's changed/check/diff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import MemcacheClient
from ansible_collections.mcfleet.fleet.plugins.module_utils.proxy_drill_report import (
    REPLICATION_FIELDS,
    build_report,
    render_files,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.replication import check_replication
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import (
    default_plan,
    load_timeline,
    per_second,
    run,
    steady_p99,
)
from ansible_collections.mcfleet.fleet.plugins.modules import proxy_drill_report as proxy_drill_report_module
from ansible_collections.mcfleet.fleet.tests.unit.chart_checks import check_chart
from ansible_collections.mcfleet.fleet.tests.unit.failover_fixtures import MemcachedProcess

T0 = 1_800_000_000.0


def write_timeline(path: Path, t0: float, requests: list[tuple[float, float, str]]) -> str:
    """A timeline as mcfleet.fleet.traffic writes it; requests: (offset_s, latency_ms, outcome)."""
    lines = [{"kind": "start", "t": t0, "plan": {}}]
    for index, (offset, ms, outcome) in enumerate(requests):
        op = "set" if index % 3 == 0 else "get"
        lines.append({"kind": "req", "t": t0 + offset, "op": op, "k": index % 50, "ms": ms, "r": outcome})
    end = t0 + (requests[-1][0] if requests else 0) + 0.5
    lines.append({"kind": "end", "t": end, "requests": len(requests), "stop_reason": "stop_file"})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def steady_seconds(seconds: int, usual_ms: float, slow_ms: float, outcome: str = "ok") -> list[tuple]:
    """20 requests a second: 19 at usual_ms and one at slow_ms (so each second's p99 is slow_ms)."""
    return [
        (s + i * 0.05, slow_ms if i == 7 else usual_ms, outcome) for s in range(seconds) for i in range(20)
    ]


def replication_result(**figures) -> dict:
    """A registered mcfleet.fleet.replication_check result: 200 keys, all replicated."""
    result = {
        "changed": False,
        "failed": False,
        "attempted": 200,
        "acknowledged": 200,
        "set_arrived": 200,
        "set_arrived_late": 0,
        "set_lost": 0,
        "delete_arrived": 200,
        "delete_lost": 0,
        "local_missing": 0,
        "wrong_shard": 0,
        "on_more_than_one_shard": 0,
        "keys_per_remote_shard": [70, 65, 65],
        "set_delay_ms": {"p50": 0.8, "p99": 2.5},
        "delete_delay_ms": {"p50": 0.7, "p99": 2.1},
        "errors": [],
        "tag": "repl-1-1800000000000",
    }
    result.update(figures)
    return result


def drill(kind: str = "one proxy", **extra) -> dict:
    return {
        "drill_id": "p1",
        "datacentre": "codfw",
        "kind": kind,
        "blocked": ["mwproxy2001"] if kind == "one proxy" else ["mwproxy2001", "mwproxy2002"],
        "blocked_for": ["10.89.213.15", "10.89.213.16"],
        "writer": "mw1001",
        "port": 11214,
        "cross_region_timeout_ms": 10,
        **extra,
    }


@pytest.fixture
def timelines(tmp_path) -> dict:
    baseline = steady_seconds(10, 1.0, 3.0)
    # One stalled request (50 ms) in second 4: that second's p99, not the steady p99.
    baseline[4 * 20 + 3] = (baseline[4 * 20 + 3][0], 50.0, "ok")
    return {
        "baseline": write_timeline(tmp_path / "baseline.jsonl", T0, baseline),
        "during": write_timeline(tmp_path / "during.jsonl", T0 + 60, steady_seconds(10, 1.5, 4.0)),
    }


def test_one_proxy_with_nothing_lost_is_ok(timelines):
    replication = {
        "before": replication_result(),
        "during": replication_result(set_delay_ms={"p50": 1.9, "p99": 6.0}),
    }
    report, rows = build_report(drill(), replication, timelines)

    assert report["ok"] is True and report["violations"] == []
    assert report["replicated_writes_lost"] == 0
    baseline, during = report["local_traffic"]["baseline"], report["local_traffic"]["during"]
    # 200 requests: 180 at 1 ms, 19 at 3 ms, one at 50 ms; nearest-rank p99 is the 198th.
    assert baseline == {
        "requests": 200,
        "client_errors": 0,
        "latency_ms": {"p50": 1.0, "p99": 3.0, "max": 50.0},
        "steady_p99_ms": 3.0,
    }
    assert during["requests"] == 200 and during["latency_ms"]["p99"] == 4.0
    assert during["steady_p99_ms"] == 4.0
    # The steady p99 is the mcfleet.fleet.steady_p99 filter's rule: one for playbooks and reports.
    assert baseline["steady_p99_ms"] == steady_p99(per_second(load_timeline(timelines["baseline"])))
    assert [row["p99_ms"] for row in rows["baseline"]] == [3.0] * 4 + [50.0] + [3.0] * 5
    assert len(rows["during"]) == 10 and sum(row["requests"] for row in rows["during"]) == 200
    # Only the report's fields of the replication check's result are copied.
    assert set(report["replication_before"]) == set(REPLICATION_FIELDS)
    assert report["replication_during"]["set_delay_ms"] == {"p50": 1.9, "p99": 6.0}
    assert {
        "kind": report["kind"],
        "blocked": report["blocked"],
        "blocked_for": report["blocked_for"],
        "writer": report["writer"],
        "format": report["format"],
    } == {
        "kind": "one proxy",
        "blocked": ["mwproxy2001"],
        "blocked_for": ["10.89.213.15", "10.89.213.16"],
        "writer": "mw1001",
        "format": 1,
    }

    files = render_files(report, rows)
    assert set(files) == {"proxy-p1.json", "proxy-p1.md", "proxy-p1.png", "proxy-p1.svg"}
    assert json.loads(files["proxy-p1.json"]) == report
    markdown = files["proxy-p1.md"]
    assert markdown.startswith("# Proxy drill p1\n")
    assert "connections from 10.89.213.15, 10.89.213.16 to port 11214 of mwproxy2001." in markdown
    assert "Result: **OK**. Replicated writes lost during the block: 0." in markdown
    assert "| replicated sets arrived / lost | 200 / 0 | 200 / 0 |" in markdown
    assert "| set delay p50 / p99 (ms) | 0.8 / 2.5 | 1.9 / 6 |" in markdown
    assert "| local client errors / requests | 0 / 200 | 0 / 200 |" in markdown
    assert "| local steady p99 (ms) | 3 | 4 |" in markdown
    ids, texts = check_chart(files, "proxy-p1", markdown)
    assert {"series-errors/s", "series-p50", "series-p99", "marker-block-0", "marker-block-1"} <= ids
    assert {"block", "local client latency, ms", "local client errors/s (error + timeout)"} <= texts


def test_one_proxy_losses_are_violations(timelines):
    replication = {
        "before": replication_result(set_lost=1, set_arrived=199),
        "during": replication_result(set_lost=3, set_arrived=197, delete_lost=1, local_missing=2),
    }
    report, rows = build_report(drill(), replication, timelines)

    assert report["ok"] is False
    assert report["replicated_writes_lost"] == 4
    assert report["violations"] == [
        "replication before: set_lost = 1 (must be 0)",
        "replication during: set_lost = 3 (must be 0)",
        "replication during: delete_lost = 1 (must be 0)",
        "replication during: local_missing = 2 (must be 0)",
    ]
    markdown = render_files(report, rows)["proxy-p1.md"]
    assert "Result: **FAILED**. Replicated writes lost during the block: 4." in markdown
    assert "- replication during: local_missing = 2 (must be 0)" in markdown
    assert "| replicated sets arrived / lost | 199 / 1 | 197 / 3 |" in markdown


def test_every_proxy_counts_lost_writes_and_judges_local_traffic(tmp_path, timelines):
    cut_off = replication_result(
        set_arrived=0, set_lost=200, delete_arrived=0, set_delay_ms={"p50": None, "p99": None}
    )
    replication = {"before": replication_result(), "during": cut_off}
    report, _rows = build_report(drill("every proxy"), replication, timelines)
    # Everything replicated was lost, as expected with every proxy blocked; local traffic is fine.
    assert report["ok"] is True, report["violations"]
    assert report["replicated_writes_lost"] == 200

    # With a 10 ms cross-region timeout the limit is 2 x 3.0 + 1 = 7 ms (above half the
    # timeout): at the limit passes, past it fails.
    at_limit = write_timeline(tmp_path / "at-limit.jsonl", T0 + 60, steady_seconds(10, 1.5, 7.0))
    report, _rows = build_report(drill("every proxy"), replication, {**timelines, "during": at_limit})
    assert report["local_traffic"]["during"]["steady_p99_ms"] == 7.0 and report["ok"] is True
    slow = write_timeline(tmp_path / "slow.jsonl", T0 + 60, steady_seconds(10, 1.5, 7.5))
    report, _rows = build_report(drill("every proxy"), replication, {**timelines, "during": slow})
    assert report["violations"] == ["local traffic during: steady_p99_ms = 7.5 > 7.0 (2 x baseline 3.0 + 1)"]

    # With a 250 ms timeout, a machine's load (7.5 ms) is not the fault; a wait on the order of
    # the timeout is: the limit is half of it, 125 ms.
    lab_timeout = drill("every proxy", cross_region_timeout_ms=250)
    report, _rows = build_report(lab_timeout, replication, {**timelines, "during": slow})
    assert report["ok"] is True, report["violations"]
    assert report["cross_region_timeout_ms"] == 250
    waiting = write_timeline(tmp_path / "waiting.jsonl", T0 + 60, steady_seconds(10, 1.5, 126.0))
    report, _rows = build_report(lab_timeout, replication, {**timelines, "during": waiting})
    assert report["violations"] == [
        "local traffic during: steady_p99_ms = 126.0 > 125.0 (0.5 x cross_region_timeout_ms 250)"
    ]

    # Client errors fail it even at baseline speed; in "one proxy" they are not judged.
    requests = steady_seconds(10, 1.0, 3.0)
    requests[25] = (requests[25][0], 1000.0, "timeout")
    requests[130] = (requests[130][0], 0.4, "error")
    erring = write_timeline(tmp_path / "erring.jsonl", T0 + 60, requests)
    report, rows = build_report(drill("every proxy"), replication, {**timelines, "during": erring})
    assert report["local_traffic"]["during"]["client_errors"] == 2
    assert report["violations"] == ["local traffic during: client_errors = 2 (must be 0)"]
    assert [row["errors"] + row["timeouts"] for row in rows["during"]] == [0, 1, 0, 0, 0, 0, 1, 0, 0, 0]
    healthy_replication = {"before": replication_result(), "during": replication_result()}
    report, _rows = build_report(drill(), healthy_replication, {**timelines, "during": erring})
    assert report["ok"] is True


def test_missing_phases_and_fields_are_violations_not_crashes(tmp_path, timelines):
    during = replication_result()
    del during["set_delay_ms"], during["errors"]
    report, rows = build_report(drill(), {"during": during}, timelines)
    assert report["ok"] is False
    assert report["replication_before"] is None
    assert report["replication_during"]["set_delay_ms"] is None
    assert report["violations"] == [
        "replication before: no replication_check result",
        "replication during: set_delay_ms missing",
        "replication during: errors missing",
    ]
    assert report["replicated_writes_lost"] == 0
    markdown = render_files(report, rows)["proxy-p1.md"]
    assert "| replicated sets arrived / lost | - / - | 200 / 0 |" in markdown

    # A failed or skipped check, and no traffic at all: still a report, with reasons.
    failed = {"changed": False, "failed": True, "msg": "cannot reach 10.89.213.15:11213"}
    empty = write_timeline(tmp_path / "empty.jsonl", T0 + 60, [])
    report, rows = build_report(
        drill("every proxy"),
        {"before": replication_result(), "during": failed},
        {**timelines, "during": empty},
    )
    assert report["replicated_writes_lost"] is None
    assert report["local_traffic"]["during"] == {
        "requests": 0,
        "client_errors": 0,
        "latency_ms": {"p50": None, "p99": None, "max": None},
        "steady_p99_ms": None,
    }
    assert report["violations"] == [
        "replication during: the replication check did not run: cannot reach 10.89.213.15:11213",
        "local traffic during: no requests, so no steady_p99_ms",
    ]
    check_chart(render_files(report, rows), "proxy-p1", render_files(report, rows)["proxy-p1.md"])

    report, _rows = build_report(drill("some proxies"), {"before": replication_result()}, timelines)
    assert "kind = 'some proxies': not one of one proxy, every proxy" in report["violations"]


def test_every_proxy_drill_traffic_on_loopback(tmp_path):
    """Real traffic timelines (a healthy run, then one through a stalled server) and a real
    replication check of a cut-off datacentre."""
    servers = [MemcachedProcess(), MemcachedProcess()]
    try:
        endpoint = {"address": "127.0.0.1", "port": servers[0].port}
        settings = {"router": endpoint, "max_requests": 100_000, "rate_per_s": 200, "seed": 3}
        baseline = run(
            default_plan(**settings, timeline=str(tmp_path / "baseline.jsonl"), max_duration_s=1.5)
        )
        router, remote = (MemcacheClient(*server.spec) for server in servers)
        cut_off = check_replication(router, [remote], count=20, deadline_s=0.3, local_shards=[router])
        MemcacheClient(*servers[0].spec).version()
        servers[0].pause()
        try:
            during = run(
                default_plan(
                    **settings, timeline=str(tmp_path / "during.jsonl"), max_duration_s=1.5, timeout_s=0.3
                )
            )
        finally:
            servers[0].resume()
    finally:
        for server in servers:
            server.stop()

    replication = {"before": replication_result(), "during": {"changed": False, **cut_off}}
    paths = {"baseline": baseline["timeline"], "during": during["timeline"]}
    report, rows = build_report(drill("every proxy"), replication, paths)
    local = report["local_traffic"]
    assert local["baseline"]["requests"] == baseline["requests"] > 100
    assert local["baseline"]["client_errors"] == baseline["client_errors"] == 0
    assert local["baseline"]["latency_ms"] == {k: baseline["latency_ms"][k] for k in ("p50", "p99", "max")}
    assert local["during"]["requests"] == during["requests"] == during["outcomes"]["timeout"] > 0
    assert local["during"]["latency_ms"]["p50"] >= 300
    assert report["replicated_writes_lost"] == 20
    assert report["ok"] is False
    assert f"local traffic during: client_errors = {during['requests']} (must be 0)" in report["violations"]
    assert sum(row["timeouts"] for row in rows["during"]) == during["requests"]
    files = render_files(report, rows)
    ids, _texts = check_chart(files, "proxy-p1", files["proxy-p1.md"])
    assert {"series-errors/s", "marker-block-0"} <= ids


def test_module_writes_once_and_is_idempotent(tmp_path, capsys, timelines):
    args = {
        "drill_id": "m1",
        "drill": {key: value for key, value in drill().items() if key != "drill_id"},
        "replication": {"before": replication_result(), "during": replication_result()},
        "timelines": timelines,
        "report_dir": str(tmp_path / "reports"),
    }

    def call(extra: dict) -> tuple[int, dict]:
        with patch_module_args({**args, **extra}), pytest.raises(SystemExit) as exit_info:
            proxy_drill_report_module.main()
        return exit_info.value.code, json.loads(capsys.readouterr().out)

    code, out = call({"_ansible_check_mode": True, "_ansible_diff": True})
    assert code == 0 and out["changed"] and not (tmp_path / "reports").exists()
    assert out["diff"]["before"] == "" and json.loads(out["diff"]["after"])["ok"] is True
    code, out = call({})
    assert code == 0 and out["changed"] and out["report"]["ok"] is True
    assert sorted(Path(p).name for p in out["paths"]) == [
        "proxy-m1.json",
        "proxy-m1.md",
        "proxy-m1.png",
        "proxy-m1.svg",
    ]
    written = json.loads((tmp_path / "reports" / "proxy-m1.json").read_text())
    assert written["local_traffic"]["baseline"]["steady_p99_ms"] == 3.0
    check_chart(tmp_path / "reports", "proxy-m1", (tmp_path / "reports" / "proxy-m1.md").read_text())
    # The same inputs draw the same bytes: a second run changes nothing.
    code, out = call({"_ansible_diff": True})
    assert code == 0 and not out["changed"]
    assert out["diff"]["before"] == out["diff"]["after"]
    # A different figure is a change; check mode says so and leaves the files alone.
    lossy = {"before": replication_result(), "during": replication_result(set_lost=2)}
    code, out = call({"replication": lossy, "_ansible_check_mode": True})
    assert (
        code == 0
        and out["changed"]
        and out["report"]["violations"] == ["replication during: set_lost = 2 (must be 0)"]
    )
    assert json.loads((tmp_path / "reports" / "proxy-m1.json").read_text()) == written

    code, out = call({"drill_id": "../escape"})
    assert code == 1 and "plain file name" in out["msg"]
    code, out = call({"timelines": {**timelines, "during": str(tmp_path / "absent.jsonl")}})
    assert code == 1 and "timelines.during" in out["msg"] and "absent.jsonl" in out["msg"]
    code, out = call({"drill": {**args["drill"], "kind": "some proxies"}})
    assert code == 1 and "kind" in out["msg"] and "some proxies" in out["msg"]
