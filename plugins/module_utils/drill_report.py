"""The report of one failover drill: JSON for machines, Markdown for people, a timeline chart.

Inputs: the traffic timeline (traffic.py), the verifier's result of each phase
(failover_verify.py), the block/unblock times and how many drill rules were left on the
shard afterwards. The chart (charts.py, PNG and SVG): three panels over the drill's
seconds, errors/s, p50/p99 latency and gutter hits/s, with the block, unblock and
re-admission marked.
"""

from __future__ import annotations

import json
import time

from ansible_collections.mcfleet.fleet.plugins.module_utils.charts import (
    chart_markdown,
    client_panels,
    figure_files,
    figure_text,
    timeline_chart,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import (
    latency_summary,
    load_timeline,
    per_second,
)

REPORT_FORMAT = 1


def _iso(ts: float | None) -> str | None:
    # ISO 8601 with milliseconds: the fraction goes before the zone designator.
    if ts is None:
        return None
    seconds, millis = divmod(round(ts * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _window(requests: list[dict], start: float | None, end: float | None) -> list[dict]:
    return [r for r in requests if (start is None or r["t"] >= start) and (end is None or r["t"] < end)]


def _gutter_ratio(samples: list[dict], start: float, end: float) -> tuple[float | None, int]:
    """Gutter get hit ratio over [start, end] from the first and last counter samples inside it
    (widened by the sample before the window, so the first second counts)."""
    before = [s for s in samples if s["t"] <= start]
    inside = [s for s in samples if start < s["t"] <= end + 1.0]
    if not inside:
        return None, 0
    first = before[-1] if before else inside[0]
    last = inside[-1]
    hits = max(0, last["get_hits"] - first["get_hits"])
    misses = max(0, last["get_misses"] - first["get_misses"])
    return (round(hits / (hits + misses), 4) if hits + misses else None), hits


def build_report(
    drill: dict,
    timeline_path: str,
    verify: dict,
    events: dict,
    rules_left: int,
) -> tuple[dict, list[dict]]:
    """Returns the report (a JSON-ready dict) and the per-second rows the chart draws
    (second 0 is `events_unix.started_at`).

    drill: {drill_id, datacentre, shard, mode, rejoin_policy, router, ...}
    verify: {"before": result, "during": result, "after": result} (any may be missing)
    events: {"blocked_at": unix, "unblocked_at": unix, "started_at"?, "finished_at"?}
    """
    timeline = load_timeline(timeline_path)
    requests = timeline["requests"]
    blocked_at = events.get("blocked_at")
    unblocked_at = events.get("unblocked_at")
    after = verify.get("after") or {}
    during = verify.get("during") or {}
    readmitted_at = events.get("readmitted_at") or after.get("readmitted_at")
    started_at = events.get("started_at") or (requests[0]["t"] if requests else blocked_at)
    # Defaults come from the timeline, so the same inputs always give the same report.
    finished_at = (
        events.get("finished_at")
        or (timeline["end"] or {}).get("t")
        or (requests[-1]["t"] if requests else None)
    )

    outcomes = {"ok": 0, "miss": 0, "error": 0, "timeout": 0}
    for req in requests:
        outcomes[req["r"]] = outcomes.get(req["r"], 0) + 1
    latency = {
        "before": latency_summary([r["ms"] for r in _window(requests, None, blocked_at)]),
        "during": latency_summary([r["ms"] for r in _window(requests, blocked_at, unblocked_at)]),
        "after": latency_summary([r["ms"] for r in _window(requests, unblocked_at, None)]),
    }
    during_errors = [r for r in _window(requests, blocked_at, unblocked_at) if r["r"] in ("error", "timeout")]
    # Clients see the failover done when their errors stop: the last failed request's end.
    error_free_after_s = (
        round(max(r["t"] + r["ms"] / 1000 for r in during_errors) - blocked_at, 3)
        if during_errors and blocked_at
        else 0.0
    )
    ratio, gutter_hits = (None, 0)
    if blocked_at and unblocked_at:
        ratio, gutter_hits = _gutter_ratio(timeline["gutter"], blocked_at, unblocked_at)
    violations = {
        phase: (verify.get(phase) or {}).get("violations", []) for phase in ("before", "during", "after")
    }
    lost = sum(int((verify.get(p) or {}).get("lost") or 0) for p in ("before", "during", "after"))
    time_to_failover = during.get("time_to_failover_s")

    report = {
        "format": REPORT_FORMAT,
        "drill_id": drill["drill_id"],
        "datacentre": drill.get("datacentre"),
        "shard": drill.get("shard"),
        "mode": drill.get("mode"),
        "rejoin_policy": drill.get("rejoin_policy"),
        "router": drill.get("router"),
        "timestamps": {
            "started_at": _iso(started_at),
            "blocked_at": _iso(blocked_at),
            "unblocked_at": _iso(unblocked_at),
            "readmitted_at": _iso(readmitted_at),
            "finished_at": _iso(finished_at),
        },
        "events_unix": {
            "started_at": started_at,
            "blocked_at": blocked_at,
            "unblocked_at": unblocked_at,
            "readmitted_at": readmitted_at,
            "finished_at": finished_at,
        },
        "drill_wall_s": round(finished_at - started_at, 3) if started_at and finished_at else None,
        "block_duration_s": round(unblocked_at - blocked_at, 3) if blocked_at and unblocked_at else None,
        # From the block to the first write of a blocked-shard key seen on the gutter
        # (the verifier's probe); the clients' view is client_error_free_after_s.
        "time_to_failover_s": time_to_failover,
        "client_error_free_after_s": error_free_after_s,
        "requests": len(requests),
        "client_errors": outcomes.get("error", 0) + outcomes.get("timeout", 0),
        "client_errors_during_block": len(during_errors),
        # The clients' own judge of every get (mcfleet.fleet.traffic): older than their last
        # write, or after their delete.
        "client_stale_reads": sum(1 for r in requests if r.get("v") == "stale"),
        "client_resurrected_reads": sum(1 for r in requests if r.get("v") == "resurrected"),
        "outcomes": outcomes,
        "latency_ms": latency,
        "lost": lost,
        "stale_after_rejoin": after.get("stale_after_rejoin"),
        "resurrected_deletes": after.get("resurrected_deletes"),
        "missing_after_rejoin": after.get("missing_after_rejoin"),
        "on_gutter": during.get("on_gutter"),
        "untouched_elsewhere": during.get("untouched_elsewhere"),
        "deleted_still_visible": during.get("deleted_still_visible"),
        "gutter_expired_within_ttl": after.get("gutter_expired_within_ttl"),
        "gutter_hit_ratio": ratio,
        "gutter_hits_during_block": gutter_hits,
        "readmission_wait_s": (after.get("timings_s") or {}).get("readmission_wait"),
        "rules_left": int(rules_left),
        "verify_violations": violations,
        "verify_timings_s": {
            p: (verify.get(p) or {}).get("timings_s") for p in ("before", "during", "after")
        },
    }
    report["ok"] = bool(
        report["rules_left"] == 0 and verify.get("after") and not any(violations.values()) and lost == 0
    )
    rows = per_second(timeline, origin=started_at)
    return report, rows


# -- Markdown -------------------------------------------------------------------------


def render_markdown(report: dict, chart_stem: str) -> str:
    r = report
    lines = [
        f"# Failover drill {r['drill_id']}",
        "",
        f"Shard **{r['shard']}** ({r['datacentre']}) blocked in **{r['mode']}** mode,"
        f" rejoin policy **{r['rejoin_policy']}**, traffic through {r['router']}."
        f" Result: **{'OK' if r['ok'] else 'FAILED'}**.",
        "",
        chart_markdown(chart_stem, "timeline"),
        "",
        "| figure | value |",
        "|---|---|",
    ]
    headline = [
        "time_to_failover_s",
        "client_error_free_after_s",
        "requests",
        "client_errors",
        "client_errors_during_block",
        "lost",
        "stale_after_rejoin",
        "resurrected_deletes",
        "client_stale_reads",
        "client_resurrected_reads",
        "on_gutter",
        "untouched_elsewhere",
        "gutter_hit_ratio",
        "gutter_expired_within_ttl",
        "readmission_wait_s",
        "rules_left",
        "block_duration_s",
        "drill_wall_s",
    ]
    lines += [f"| `{name}` | {figure_text(r.get(name))} |" for name in headline]
    lines += [
        "",
        "## Client latency (ms)",
        "",
        "| window | requests | p50 | p99 | max |",
        "|---|---|---|---|---|",
    ]
    for window in ("before", "during", "after"):
        lat = r["latency_ms"][window]
        lines.append(
            f"| {window} | {lat['requests']} | "
            + " | ".join(figure_text(lat[name]) for name in ("p50", "p99", "max"))
            + " |"
        )
    lines += ["", "## Timestamps (UTC)", ""]
    lines += [f"- {name}: {value or '-'}" for name, value in r["timestamps"].items()]
    lines += ["", "## Verification", ""]
    for phase, problems in r["verify_violations"].items():
        lines.append(f"- {phase}: " + ("ok" if not problems else "; ".join(problems)))
    return "\n".join(lines) + "\n"


# -- chart ----------------------------------------------------------------------------


def render_chart(report: dict, rows: list[dict]):
    """Three panels over the drill's seconds: errors/s, p50/p99 latency and gutter hits/s,
    with the block, unblock and re-admission marked."""
    events = report["events_unix"]
    started_at = events["started_at"]
    seconds = [index + 0.5 for index in range(len(rows))]
    gutter_hits = [("gutter hits/s", "#1e8449", seconds, [r["gutter_hits"] for r in rows])]
    panels = [*client_panels(rows), {"title": "gutter get hits/s", "lines": gutter_hits}]
    colours = {"blocked_at": "#c0392b", "unblocked_at": "#1e8449", "readmitted_at": "#7f8c8d"}
    markers = [
        (name.replace("_at", ""), colour, events[name] - started_at)
        for name, colour in colours.items()
        if events.get(name) is not None and started_at is not None
    ]
    title = (
        f"Drill {report['drill_id']}: {report['shard']} {report['mode']}, rejoin {report['rejoin_policy']}"
    )
    return timeline_chart(title, panels, markers, x_label="seconds since the drill started")


# -- files ----------------------------------------------------------------------------


def render_files(report: dict, rows: list[dict]) -> dict[str, bytes | str]:
    """{file name: content} for <drill_id>.json, .md, .png and .svg."""
    drill_id = report["drill_id"]
    return {
        f"{drill_id}.json": json.dumps(report, indent=2, sort_keys=True) + "\n",
        f"{drill_id}.md": render_markdown(report, drill_id),
        **figure_files(render_chart(report, rows), drill_id),
    }
