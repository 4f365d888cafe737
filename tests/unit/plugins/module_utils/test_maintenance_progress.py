"""The rolling maintenance's progress log, its lines, its ETA, and its report."""

import json

from ansible_collections.mcfleet.fleet.plugins.module_utils.maintenance_progress import (
    STEPS,
    append,
    done_hosts,
    load,
    progress_line,
    unfinished_hosts,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.maintenance_report import (
    build_report,
    render_files,
)
from ansible_collections.mcfleet.fleet.tests.unit.chart_checks import check_chart


def entries_of(host, start, step_s=1.0, upto="done"):
    steps = STEPS[: STEPS.index(upto) + 1]
    return [
        {"t": start + i * step_s, "host": host, "step": step, "detail": ""} for i, step in enumerate(steps)
    ]


def test_a_line_shows_elapsed_time_step_and_an_eta_once_a_host_is_done():
    log = [{"t": 100.0, "host": "codfw", "step": "plan", "detail": ""}, *entries_of("mc2001", 100.0, 1.0)]
    line = progress_line(log, "mc2002", "block", "reject", remaining_hosts=2, now=120.0)
    assert line.startswith("+20.0s mc2002 [3/15 block] reject (ETA ")
    assert "14s per host" in line
    assert "ETA" not in progress_line(log[:3], "mc2001", "block", "", remaining_hosts=2, now=103.0)


def test_the_log_round_trips_and_names_hosts_left_part_way(tmp_path):
    path = str(tmp_path / "run" / "progress.jsonl")
    for entry in [*entries_of("mc2001", 0.0), *entries_of("mc2002", 20.0, upto="stop")]:
        append(path, entry)
    loaded = load(path)
    assert len(loaded) == len(STEPS) + STEPS.index("stop") + 1
    assert unfinished_hosts(loaded) == ["mc2002"]
    assert load(str(tmp_path / "missing.jsonl")) == []


def test_a_torn_last_line_is_skipped_and_closed_before_the_next_entry(tmp_path):
    path = str(tmp_path / "progress.jsonl")
    for entry in entries_of("mc2001", 0.0):
        append(path, entry)
    # A controller killed in mid-write leaves half a line, without its newline.
    with open(path, "a") as stream:
        stream.write('{"host": "mc2002", "step": "blo')
    assert done_hosts(load(path)) == ["mc2001"]
    append(path, {"t": 30.0, "host": "mc2002", "step": "preflight", "detail": ""})
    loaded = load(path)
    assert loaded[-1]["host"] == "mc2002"
    assert len(loaded) == len(STEPS) + 1


def test_only_a_done_line_makes_a_host_done(tmp_path):
    path = str(tmp_path / "progress.jsonl")
    # mc2002 failed its health gate with memcached running: not done, whatever memcached says.
    for entry in [*entries_of("mc2001", 0.0), *entries_of("mc2002", 20.0, upto="health")]:
        append(path, entry)
    append(path, {"t": 40.0, "host": "mc2002", "step": "failed", "detail": "health gate"})
    assert done_hosts(load(path)) == ["mc2001"]
    assert unfinished_hosts(load(path)) == ["mc2002"]


def test_the_report_counts_time_out_errors_while_out_and_overhead(tmp_path):
    timeline = tmp_path / "traffic.jsonl"
    requests = [
        {"kind": "req", "t": 100.0 + i * 0.5, "op": "get", "k": 1, "ms": 1.0, "r": "ok"} for i in range(60)
    ]
    requests[10]["r"] = "error"  # at t=105, while mc2001 is out (block at 102, routers at 112)
    timeline.write_text("\n".join(json.dumps(r) for r in requests) + "\n")
    plan = {"datacentre": "codfw", "action": "restart", "reason": "T1", "batch_size": 1}
    log = [
        {
            "t": 100.0,
            "host": "codfw",
            "step": "plan",
            "detail": "",
            "data": {"plan": plan, "run": {"id": "x"}},
        },
        *entries_of("mc2001", 100.0, 1.0),
    ]
    warmup = next(entry for entry in log if entry["step"] == "warmup")
    warmup["data"] = {"items_before": 5000, "items_after_start": 0, "items_after_warmup": 1200}
    next(entry for entry in log if entry["step"] == "invalidate")["data"] = {"copied": 40, "deleted": 3}
    next(entry for entry in log if entry["step"] == "catch_up")["data"] = {
        "followed_deleted": 2,
        "deleted": 1,
    }
    report = build_report(log, str(timeline), "finished")
    host = report["hosts"][0]
    assert report["maintained"] == 1
    assert report["client_errors"] == 1
    assert host["out_s"] == 8.0  # block (t=102) to unblock (t=110, after invalidate)
    assert host["client_errors_while_out"] == 1
    assert host["overhead_s"] == host["wall_s"] - host["step_seconds"]["act"] - host["step_seconds"]["warmup"]
    files = render_files(report, log, str(timeline), "maintenance-x")
    assert set(files) == {"maintenance-x.json", "maintenance-x.md", "maintenance-x.png", "maintenance-x.svg"}
    assert "| mc2001 | done | 8.000 | 1 |" in files["maintenance-x.md"]
    # Items before, right after the start, after the warm-up; one host: no cookbook sleep.
    assert "| 5000 | 0 | 1200 |" in files["maintenance-x.md"]
    # The stale-safe return: copied before the unblock, deleted before, during and after it.
    assert (host["keys_copied"], host["stale_keys_deleted"]) == (40, 6)
    assert (
        files["maintenance-x.md"]
        .splitlines()[
            next(
                i
                for i, line in enumerate(files["maintenance-x.md"].splitlines())
                if line.startswith("| mc2001")
            )
        ]
        .endswith("| 40 | 6 |")
    )
    assert report["cookbook_sleep_s"] == 0
    assert "its sleeps alone for these hosts take 0 s" in files["maintenance-x.md"]
    ids, texts = check_chart(files, "maintenance-x", files["maintenance-x.md"])
    assert {"series-errors/s", "span-mc2001"} <= ids and "mc2001" in texts


def test_the_report_sets_the_run_against_the_cookbooks_sleeps_between_hosts():
    plan = {"datacentre": "codfw", "action": "restart", "reason": "T1", "batch_size": 1}
    log = [
        {"t": 100.0, "host": "codfw", "step": "plan", "data": {"plan": plan, "run": {"id": "x"}}},
        *entries_of("mc2001", 100.0, 1.0),
        *entries_of("mc2002", 120.0, 1.0),
        *entries_of("mc2003", 140.0, 1.0, upto="act"),  # stopped part way: not maintained
    ]
    report = build_report(log, None, "stopped")
    assert report["maintained"] == 2
    # Two hosts done: the cookbook sleeps once between them.
    assert report["cookbook_sleep_s"] == 900
