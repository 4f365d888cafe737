"""The client's view of a shard's return in the maintenance report: its keys placed by the
explainer's hashing, its hit ratio before the block, right after the unblock, and the time to
90% of before, in the Markdown and drawn over the run."""

import json

from ansible_collections.mcfleet.fleet.plugins.module_utils.maintenance_report import (
    HIT_WINDOW_GETS,
    build_report,
    client_warmup,
    hit_ratio_series,
    key_hosts,
    render_files,
    render_markdown,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.route_explain import explain, router_from_model
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import traffic_keys
from ansible_collections.mcfleet.fleet.tests.unit.chart_checks import check_chart
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import inventory_data


def get(t, key, outcome):
    return {"t": t, "op": "get", "k": key, "r": outcome}


def test_each_traffic_key_is_placed_where_the_router_sends_it():
    model = build_topology(*inventory_data("lab"))
    plan = {"route_prefix": "/codfw/mw/", "run_id": "r1", "key_count": 60}
    placed = key_hosts(model, "mw2001", plan)
    assert set(placed) == set(range(60))
    assert set(placed.values()) == {"mc2001", "mc2002", "mc2003"}
    router = router_from_model(model, "mw2001")
    key = traffic_keys(plan)[7]
    assert placed[7] == explain(router, "get", key)["destinations"][0]["host"]


def test_hit_ratio_before_right_after_and_the_time_back_to_ninety_percent():
    mine = {0, 1}
    before = [get(10 + i * 0.1, i % 2, "ok" if i % 5 else "miss") for i in range(50)]  # 0.8
    others = [get(20 + i * 0.1, 5, "miss") for i in range(50)]  # another shard's key: ignored
    sets = [{"t": 30.0, "op": "set", "k": 0, "r": "ok"}]
    # Unblocked at t=100: half the first window misses, then every get hits.
    after = [get(100 + i * 0.1, i % 2, "miss" if i < HIT_WINDOW_GETS // 2 else "ok") for i in range(60)]
    view = client_warmup(before + others + sets + after, mine, blocked_at=50.0, unblocked_at=100.0)
    assert view["client_hit_ratio_before"] == 0.8
    assert view["client_hit_ratio_after_unblock"] == 0.5
    # The first window of 20 gets with at least 0.72 hits (15) ends at the 25th get after the unblock.
    assert view["client_recovered_s"] == 2.4
    # 5 points below 0.8 is 15 of 20 hits too.
    assert view["client_within_points_s"] == 2.4


def test_within_five_points_is_stricter_than_ninety_percent_of_a_high_ratio():
    before = [get(10 + i * 0.1, 0, "ok") for i in range(40)]  # 1.0
    after = [get(100 + i * 0.1, 0, "miss" if i < 10 else "ok") for i in range(60)]
    view = client_warmup(before + after, {0}, blocked_at=50.0, unblocked_at=100.0)
    # 90% of 1.0 is 18 hits of 20: the window ending at the 28th get; 5 points is 19: the 29th.
    assert (view["client_recovered_s"], view["client_within_points_s"]) == (2.7, 2.8)


def test_a_return_that_never_recovers_in_the_run_says_so():
    before = [get(10 + i, 0, "ok") for i in range(30)]
    after = [get(100 + i, 0, "miss") for i in range(30)]
    view = client_warmup(before + after, {0}, blocked_at=50.0, unblocked_at=100.0)
    assert (view["client_hit_ratio_before"], view["client_hit_ratio_after_unblock"]) == (1.0, 0.0)
    assert view["client_recovered_s"] is None and view["client_within_points_s"] is None
    report = {
        "action": "restart",
        "datacentre": "codfw",
        "status": "finished",
        "reason": "r",
        "target_release": None,
        "method": None,
        "started_at": "x",
        "wall_s": 1,
        "batch_size": 1,
        "requests": 60,
        "client_errors": 0,
        "maintained": 1,
        "mean_overhead_s": 1.0,
        "cookbook_sleep_s": 0,
        "hosts": [{"host": "mc2001", "status": "done", **view}],
    }
    assert "| mc2001 | 1.000 | 0.000 | not in the run | not in the run |" in render_markdown(report, "chart")


def test_the_chart_draws_each_returned_servers_hit_ratio_over_the_run(tmp_path):
    # mc2001's keys (0, 1) hit before its block, miss while it is out, and hit again after;
    # mc2002 (key 2) was never touched by the run's gets: no line for it.
    gets = [get(100 + i * 0.1, i % 2, "ok") for i in range(40)]
    gets += [get(110 + i * 0.1, i % 2, "miss") for i in range(HIT_WINDOW_GETS)]
    gets += [get(120 + i * 0.1, i % 2, "ok") for i in range(40)]
    xs, ys = hit_ratio_series(gets, {0, 1}, origin=100.0)
    # Bins of 2 s: 100-104 s hits, 110-112 s misses, 120-124 s hits; no bin where no get ran.
    assert xs == [1.0, 3.0, 11.0, 21.0, 23.0]
    assert ys == [1.0, 1.0, 0.0, 1.0, 1.0]
    assert hit_ratio_series(gets, {2}, origin=100.0) == ([], [])

    timeline = tmp_path / "traffic.jsonl"
    timeline.write_text("\n".join(json.dumps({"kind": "req", "ms": 1.0, **r}) for r in gets) + "\n")
    plan = {"datacentre": "codfw", "action": "restart", "reason": "T1", "batch_size": 1}
    steps = ["preflight", "block", "act", "unblock", "done"]
    log = [
        {"t": 100.0, "host": "codfw", "step": "plan", "data": {"plan": plan, "run": {"id": "x"}}},
        *(
            {"t": t, "host": "mc2001", "step": step}
            for t, step in zip((101, 106, 107, 118, 119), steps, strict=True)
        ),
    ]
    keys = {0: "mc2001", 1: "mc2001", 2: "mc2002"}
    report = build_report(log, str(timeline), "finished", keys)
    assert report["hosts"][0]["client_hit_ratio_before"] == 1.0
    files = render_files(report, log, str(timeline), "maintenance-x", keys)
    ids, texts = check_chart(files, "maintenance-x", files["maintenance-x.md"])
    assert {"series-errors/s", "span-mc2001", "series-mc2001"} <= ids
    assert "series-mc2002" not in ids
    assert any("hit ratio on each server's keys" in text for text in texts)
    # A gutter server has no keys of its own: no line, even with a row in the report.
    gutter_view = client_warmup(gets, set(), blocked_at=130.0, unblocked_at=140.0)
    report["hosts"].append({"host": "mc-gp2001", "status": "done", **gutter_view})
    ids, _texts = check_chart(render_files(report, log, str(timeline), "m", keys), "m", "](m.png) ](m.svg)")
    assert "series-mc-gp2001" not in ids
