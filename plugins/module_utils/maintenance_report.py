"""The rolling maintenance's report: per host and in total, from the progress log and the
client traffic's timeline. JSON for machines, Markdown for people, a timeline chart
(charts.py: PNG and SVG).
"""

from __future__ import annotations

import json
import time

from ansible_collections.mcfleet.fleet.plugins.module_utils.charts import (
    chart_markdown,
    figure_files,
    timeline_chart,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.maintenance_progress import STEPS
from ansible_collections.mcfleet.fleet.plugins.module_utils.route_explain import explain, router_from_model
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import (
    load_timeline,
    per_second,
    traffic_keys,
)

REPORT_FORMAT = 1
# Wikimedia's rolling restart (operations-cookbooks, cookbooks/sre/memcached/roll-reboot-restart.py)
# sleeps this long after each host before the next: the schedule a run is set against.
COOKBOOK_SLEEP_S = 900


def _iso(epoch):
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


def _errors(requests, start, end):
    window = [r for r in requests if start <= r["t"] < end]
    return len(window), sum(1 for r in window if r["r"] in ("error", "timeout"))


# The client's view of a shard's return: its gets of the keys that shard holds, over a window of
# this many gets (at the lab's 100 requests/s, about 20 gets of each shard's keys a second).
HIT_WINDOW_GETS = 20
# "Back" is 90% of the hit ratio before, as "Scaling Memcache at Facebook" (NSDI'13) measures it.
RECOVERED_FRACTION = 0.9
# A warm return's goal: the hit ratio back within this much of its value before (5 points).
CLOSE_POINTS = 0.05


def key_hosts(model: dict, router_host: str, plan: dict) -> dict:
    """Which server each of the traffic's keys lives on, by its index, as `router_host` routes
    a get with every server up (route_explain's exact hashing)."""
    router = router_from_model(model, router_host)
    return {
        index: explain(router, "get", key)["destinations"][0]["host"]
        for index, key in enumerate(traffic_keys(plan))
    }


def _ratio(gets):
    return round(sum(1 for r in gets if r["r"] == "ok") / len(gets), 3) if gets else None


def _answered_gets(requests: list, keys_of_host: set) -> list:
    """The client's gets of one server's keys that got an answer (a hit or a miss)."""
    return [
        r
        for r in requests
        if r.get("op") == "get" and r.get("k") in keys_of_host and r["r"] in ("ok", "miss")
    ]


# The chart's hit ratio is per bin of this many seconds: about 40 gets of one shard's keys at the
# lab's rate, few enough to show a return's dip, enough that one miss is not a cliff.
CHART_BIN_S = 2.0


def hit_ratio_series(requests: list, keys_of_host: set, origin: float) -> tuple[list, list]:
    """The client's hit ratio on one server's keys over the run, for the chart: per CHART_BIN_S
    bin (its middle, seconds since `origin`); bins without a get are left out."""
    hits: dict[int, list] = {}
    for r in _answered_gets(requests, keys_of_host):
        hits.setdefault(int((r["t"] - origin) // CHART_BIN_S), []).append(r)
    bins = sorted(hits)
    return [round((b + 0.5) * CHART_BIN_S, 3) for b in bins], [_ratio(hits[b]) for b in bins]


def _first_window_at(after: list, threshold: float, unblocked_at: float):
    """Seconds from the unblock to the end of the first window of gets reaching `threshold`."""
    for end in range(min(HIT_WINDOW_GETS, len(after)), len(after) + 1):
        window = after[max(0, end - HIT_WINDOW_GETS) : end]
        if window and _ratio(window) >= threshold:
            return round(max(window[-1]["t"] - unblocked_at, 0.0), 3)
    return None


def client_warmup(requests: list, keys_of_host: set, blocked_at: float, unblocked_at: float) -> dict:
    """The hit ratio the client saw on one server's keys before its block and right after its
    unblock (the first window of gets), and the seconds from the unblock until a window of gets
    reached RECOVERED_FRACTION of the ratio before, and until one came within
    CLOSE_POINTS of it (None if it did not in the timeline)."""
    gets = _answered_gets(requests, keys_of_host)
    before = _ratio([r for r in gets if r["t"] < blocked_at])
    after = [r for r in gets if r["t"] >= unblocked_at]
    recovered_s = close_s = None
    if before is not None:
        recovered_s = _first_window_at(after, RECOVERED_FRACTION * before, unblocked_at)
        close_s = _first_window_at(after, before - CLOSE_POINTS, unblocked_at)
    return {
        "client_hit_ratio_before": before,
        "client_hit_ratio_after_unblock": _ratio(after[:HIT_WINDOW_GETS]),
        "client_recovered_s": recovered_s,
        "client_within_points_s": close_s,
    }


def build_report(entries: list, timeline_path: str | None, status: str, keys: dict | None = None) -> dict:
    """`entries`: the progress log (maintenance_progress); `status`: finished | stopped;
    `keys`: the traffic's key index -> server (key_hosts), for the client's view of each return."""
    plan_entry = next((e for e in entries if e["step"] == "plan"), {})
    plan = plan_entry.get("data", {}).get("plan", {})
    run = plan_entry.get("data", {}).get("run", {})
    before = plan_entry.get("data", {}).get("before", {})
    timeline = load_timeline(timeline_path) if timeline_path else {"requests": [], "gutter": []}
    requests = timeline["requests"]

    hosts = {}
    for entry in entries:
        if entry["step"] in ("plan", "finished"):
            continue
        host = hosts.setdefault(entry["host"], {"host": entry["host"], "steps": {}, "status": "in progress"})
        host["steps"][entry["step"]] = entry["t"]
        if entry["step"] == "skip":
            host["status"] = "skipped (already done)"
        elif entry["step"] == "failed":
            host["status"] = "FAILED: " + entry.get("detail", "")
        elif entry["step"] == "done":
            host["status"] = "done"
            host.update(entry.get("data", {}))
        elif entry["step"] == "warmup":
            host.update(entry.get("data", {}))
        elif entry["step"] == "invalidate":
            # The stale-safe return (plugins/module_utils/rejoin.py): keys copied from the gutter
            # and stale keys deleted before the unblock, then during and after the re-admission.
            data = entry.get("data", {})
            host["keys_copied"] = int(data.get("copied") or 0)
            host["stale_keys_deleted"] = int(data.get("deleted") or 0)
        elif entry["step"] == "catch_up":
            data = entry.get("data", {})
            late = int(data.get("followed_deleted") or 0) + int(data.get("deleted") or 0)
            host["stale_keys_deleted"] = host.get("stale_keys_deleted", 0) + late
        elif entry["step"] == "preflight":
            host["hit_ratio_before"] = (entry.get("data", {}).get("before") or {}).get("hit_ratio")
    for host in hosts.values():
        steps = host["steps"]
        ordered = [(name, steps[name]) for name in STEPS if name in steps]
        host["step_seconds"] = {
            name: round(t - ordered[i - 1][1], 3) for i, (name, t) in enumerate(ordered) if i > 0
        }
        if ordered:
            host["wall_s"] = round(ordered[-1][1] - ordered[0][1], 3)
            waits = sum(host["step_seconds"].get(name, 0) for name in ("act", "warmup"))
            # What mcfleet itself costs: everything but the restart/upgrade/reimage and the warm-up.
            host["overhead_s"] = round(host["wall_s"] - waits, 3)
        if "block" in steps:
            out_end = steps.get("unblock") or steps.get("failed")
            host["out_s"] = round(out_end - steps["block"], 3) if out_end else None
            if out_end and requests:
                host["requests_while_out"], host["client_errors_while_out"] = _errors(
                    requests, steps["block"], steps.get("routers", out_end)
                )
            if keys and "unblock" in steps and requests:
                mine = {index for index, server in keys.items() if server == host["host"]}
                host.update(client_warmup(requests, mine, steps["block"], steps["unblock"]))
        host["steps"] = {name: _iso(t) for name, t in steps.items()}
    total_requests = len(requests)
    total_errors = sum(1 for r in requests if r["r"] in ("error", "timeout"))
    maintained = [h for h in hosts.values() if h["status"] == "done"]
    return {
        "format": REPORT_FORMAT,
        "id": run.get("id"),
        "status": status,
        "datacentre": plan.get("datacentre"),
        "action": plan.get("action"),
        "target_release": plan.get("target_release"),
        "method": plan.get("method"),
        "reason": plan.get("reason"),
        "batch_size": plan.get("batch_size"),
        "started_at": _iso(run.get("started_at")),
        "wall_s": round(entries[-1]["t"] - entries[0]["t"], 3) if entries else 0,
        "hosts": [
            hosts[name] for name in sorted(hosts, key=lambda n: hosts[n]["steps"].get("preflight") or "")
        ],
        "maintained": len(maintained),
        "requests": total_requests,
        "client_errors": total_errors,
        # Gets that read an older value than the client's last write, or one it had deleted
        # (mcfleet.fleet.traffic's judge): a shard's return must produce none.
        "stale_reads": sum(1 for r in requests if r.get("v") == "stale"),
        "resurrected_reads": sum(1 for r in requests if r.get("v") == "resurrected"),
        "mean_overhead_s": round(sum(h["overhead_s"] for h in maintained) / len(maintained), 3)
        if maintained
        else None,
        "versions_before": {host: data.get("version") for host, data in before.items()},
        # The cookbook's sleeps alone, between the hosts this run maintained, batch size 1.
        "cookbook_sleep_s": max(len(maintained) - 1, 0) * COOKBOOK_SLEEP_S,
    }


def render_markdown(report: dict, chart_stem: str) -> str:
    lines = [
        f"# Rolling {report['action']} of {report['datacentre']}: {report['status']}",
        "",
        f"- reason: {report['reason']}",
        f"- target: {report['target_release'] or 'same release'} {report['method'] or ''}".rstrip(),
        f"- started: {report['started_at']}, wall time {report['wall_s']} s, "
        f"batch size {report['batch_size']}",
        f"- client requests {report['requests']}, client errors {report['client_errors']}, stale reads "
        f"{report.get('stale_reads', 0)}, resurrected reads {report.get('resurrected_reads', 0)}",
        f"- hosts maintained: {report['maintained']}, mean mcfleet overhead per host "
        f"(wall minus act and warm-up): {report['mean_overhead_s']} s",
        f"- against Wikimedia's roll-reboot-restart cookbook ({COOKBOOK_SLEEP_S} s between hosts, one at "
        f"a time): its sleeps alone for these hosts take {report['cookbook_sleep_s']} s, "
        f"this whole run {report['wall_s']} s",
        "",
        "| host | status | out (s) | errors while out | hit ratio before | after | items before "
        "| right after the start | after the warm-up | wall (s) | act (s) | overhead (s) "
        "| keys copied from the gutter | stale keys deleted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(value):
        return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))

    for h in report["hosts"]:
        lines.append(
            f"| {h['host']} | {h['status']} | {fmt(h.get('out_s'))} "
            f"| {fmt(h.get('client_errors_while_out'))} "
            f"| {fmt(h.get('hit_ratio_before'))} | {fmt(h.get('hit_ratio_after'))} "
            f"| {fmt(h.get('items_before'))} | {fmt(h.get('items_after_start'))} "
            f"| {fmt(h.get('items_after_warmup'))} | {fmt(h.get('wall_s'))} "
            f"| {fmt(h.get('step_seconds', {}).get('act'))} | {fmt(h.get('overhead_s'))} "
            f"| {fmt(h.get('keys_copied'))} | {fmt(h.get('stale_keys_deleted'))} |"
        )
    viewed = [h for h in report["hosts"] if "client_hit_ratio_before" in h]
    if viewed:
        lines += [
            "",
            f"The client's hit ratio on each server's keys, over windows of {HIT_WINDOW_GETS} gets:",
            "",
            f"| host | before its block | right after its unblock "
            f"| back to {RECOVERED_FRACTION:.0%} of before (s after the unblock) "
            f"| back within {CLOSE_POINTS * 100:g} points of before (s) |",
            "|---|---|---|---|---|",
        ]

        def seconds(value):
            return "not in the run" if value is None else fmt(value)

        for h in viewed:
            lines.append(
                f"| {h['host']} | {fmt(h['client_hit_ratio_before'])} "
                f"| {fmt(h['client_hit_ratio_after_unblock'])} "
                f"| {seconds(h['client_recovered_s'])} | {seconds(h['client_within_points_s'])} |"
            )
    lines += ["", "Seconds per step:", "", "| host | " + " | ".join(STEPS[1:]) + " |"]
    lines.append("|---" * len(STEPS) + "|")
    for h in report["hosts"]:
        seconds = h.get("step_seconds", {})
        lines.append(
            f"| {h['host']} | " + " | ".join(str(seconds.get(name, "")) for name in STEPS[1:]) + " |"
        )
    lines += ["", chart_markdown(chart_stem, "timeline"), ""]
    return "\n".join(lines)


# One colour per maintained server in the hit-ratio panel (a datacentre has more shards than
# colours only in production, where the Markdown table carries every figure).
SERVER_COLOURS = ("#2471a3", "#d35400", "#1e8449", "#7d3c98", "#b7950b", "#17a589", "#c0392b", "#566573")


def render_chart(report: dict, entries: list, timeline_path: str | None, keys: dict | None = None):
    """Client errors/s over the run, each host's time out of service (block to unblock) as a bar,
    and, with `keys` (key_hosts), the client's hit ratio on each maintained server's keys."""
    start = entries[0]["t"] if entries else 0
    end = entries[-1]["t"] if entries else 1
    timeline = load_timeline(timeline_path) if timeline_path else {"requests": [], "gutter": []}
    rows = per_second(timeline, origin=start) if timeline_path else []
    rows = rows[: int(end - start) + 1]
    spans = []
    for host in report["hosts"]:
        steps = {e["step"]: e["t"] for e in entries if e["host"] == host["host"]}
        if "block" not in steps:
            continue
        back = steps.get("unblock") or steps.get("failed") or end
        colour = "#c0392b" if host["status"].startswith("FAILED") else "#2471a3"
        spans.append((host["host"], colour, steps["block"] - start, back - start))
    panels = [
        {
            "title": "client errors/s",
            "lines": [
                (
                    "errors/s",
                    "#c0392b",
                    [i + 0.5 for i in range(len(rows))],
                    [r["errors"] + r["timeouts"] for r in rows],
                )
            ],
        },
        {"title": "out of service (block to unblock)", "spans": spans},
    ]
    if keys and timeline["requests"]:
        ratio_lines = []
        viewed = [h for h in report["hosts"] if h.get("client_hit_ratio_before") is not None]
        for index, host in enumerate(viewed):
            mine = {key for key, server in keys.items() if server == host["host"]}
            xs, ys = hit_ratio_series(timeline["requests"], mine, start)
            ratio_lines.append((host["host"], SERVER_COLOURS[index % len(SERVER_COLOURS)], xs, ys))
        if ratio_lines:
            panels.append(
                {
                    "title": f"client hit ratio on each server's keys (per {CHART_BIN_S:g} s)",
                    "lines": ratio_lines,
                }
            )
    title = f"Rolling {report['action']} of {report['datacentre']} ({report['status']})"
    return timeline_chart(title, panels, x_label="seconds since the run started")


def render_files(
    report: dict, entries: list, timeline_path: str | None, stem: str, keys: dict | None = None
) -> dict:
    return {
        f"{stem}.json": json.dumps(report, indent=2, sort_keys=True) + "\n",
        f"{stem}.md": render_markdown(report, stem),
        **figure_files(render_chart(report, entries, timeline_path, keys), stem),
    }
