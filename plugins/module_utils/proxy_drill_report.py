"""The report of one cross-datacentre proxy drill: JSON for machines, Markdown for people, a chart.

Inputs: the replication check's result before and during the block (replication.py, through
plugins/modules/replication_check.py) and two traffic timelines (traffic.py) of the writer's
local traffic, one before the block (baseline) and one with it in place (during).
The verdict depends on what was blocked:
- one proxy: its datacentre's other proxies carry the replication, so nothing may be lost;
- every proxy: replicated writes are lost (counted, not judged), but the writer's local
  traffic must not suffer: no client errors, and no steady p99 on the scale of the wait a
  blocked datacentre causes (see _p99_limit).
Both need a before phase that lost nothing, or the fleet was not healthy to start with.
The chart (charts.py, PNG and SVG): local client errors/s and p50/p99 latency, baseline then
during, with the block marked where one ends and the other begins.
"""

from __future__ import annotations

import json

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
    steady_p99,
)

REPORT_FORMAT = 1
ONE_PROXY = "one proxy"
EVERY_PROXY = "every proxy"
KINDS = (ONE_PROXY, EVERY_PROXY)
PHASES = ("before", "during")
TRAFFIC_PHASES = ("baseline", "during")
# The replication check's figures the report carries; the rest of its result (tag, keys per
# shard) is the check's own business.
REPLICATION_FIELDS = (
    "attempted",
    "acknowledged",
    "set_arrived",
    "set_lost",
    "delete_arrived",
    "delete_lost",
    "local_missing",
    "wrong_shard",
    "set_delay_ms",
    "delete_delay_ms",
    "errors",
)
LOST_FIELDS = ("set_lost", "delete_lost")
# Twice the baseline's steady p99, plus slack for loopback-fast baselines of a fraction of a ms.
P99_FACTOR = 2
P99_SLACK_MS = 1.0
# A local request that waits on the blocked datacentre waits for the router's cross-region
# timeout (mcrouter --cross-region-timeout-ms; the memcached proxy's remote pool timeout), so
# the fault shows as latency on that scale. A shared machine's load moves a loopback p99 by
# milliseconds (0.86 -> 2.84 ms seen beside `make lint`), so judging 2x the baseline alone
# failed healthy drills; half the timeout tells the two apart.
TIMEOUT_SHARE = 0.5


def _count(value) -> int | None:
    """An integer figure, or None when it is absent or not a number."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _replication_phase(phase: str, result) -> tuple[dict | None, list[str]]:
    """The fields the report keeps of one phase's result, and a violation per missing one."""
    if not isinstance(result, dict) or not result:
        return None, [f"replication {phase}: no replication_check result"]
    if result.get("failed") or result.get("skipped"):
        why = result.get("msg") or ("failed" if result.get("failed") else "skipped")
        return None, [f"replication {phase}: the replication check did not run: {why}"]
    kept = {name: result.get(name) for name in REPLICATION_FIELDS}
    problems = [f"replication {phase}: {name} missing" for name, value in kept.items() if value is None]
    return kept, problems


def _lost_nothing(phase: str, kept: dict | None, fields: tuple[str, ...]) -> list[str]:
    if kept is None:
        return []  # already a violation of its own
    problems = []
    for name in fields:
        value = _count(kept.get(name))
        if kept.get(name) is not None and value != 0:
            problems.append(f"replication {phase}: {name} = {kept[name]} (must be 0)")
    return problems


def _local_traffic(timeline: dict) -> tuple[dict, list[dict]]:
    requests = timeline["requests"]
    rows = per_second(timeline)
    latency = latency_summary([r["ms"] for r in requests])
    return {
        "requests": len(requests),
        "client_errors": sum(1 for r in requests if r["r"] in ("error", "timeout")),
        "latency_ms": {name: latency[name] for name in ("p50", "p99", "max")},
        "steady_p99_ms": steady_p99(rows),
    }, rows


def _p99_limit(baseline_ms: float, cross_region_timeout_ms: float) -> tuple[float, str]:
    """The highest steady p99 (ms) that local traffic may show with the remote datacentre
    blocked, and how it was reached (for the violation's text)."""
    relative = round(P99_FACTOR * baseline_ms + P99_SLACK_MS, 3)
    absolute = round(TIMEOUT_SHARE * cross_region_timeout_ms, 3)
    if absolute >= relative:
        return absolute, f"{TIMEOUT_SHARE:g} x cross_region_timeout_ms {cross_region_timeout_ms:g}"
    return relative, f"{P99_FACTOR} x baseline {baseline_ms} + {P99_SLACK_MS:g}"


def _judge_local_traffic(baseline: dict, during: dict, cross_region_timeout_ms: float) -> list[str]:
    problems = []
    if during["client_errors"]:
        problems.append(f"local traffic during: client_errors = {during['client_errors']} (must be 0)")
    base, now = baseline["steady_p99_ms"], during["steady_p99_ms"]
    if base is None or now is None:
        empty = [name for name, value in (("baseline", base), ("during", now)) if value is None]
        problems.append(f"local traffic {' and '.join(empty)}: no requests, so no steady_p99_ms")
    else:
        limit, reached = _p99_limit(base, cross_region_timeout_ms)
        if now > limit:
            problems.append(f"local traffic during: steady_p99_ms = {now} > {limit} ({reached})")
    return problems


def build_report(drill: dict, replication: dict, timelines: dict) -> tuple[dict, dict[str, list[dict]]]:
    """Returns the report (a JSON-ready dict) and the per-second rows of each traffic phase
    ({"baseline": rows, "during": rows}, second 0 at each timeline's first request).

    drill: {drill_id, datacentre, kind, blocked, blocked_for, writer, port, cross_region_timeout_ms}
    replication: {"before": replication_check result, "during": ...} (either may be missing)
    timelines: {"baseline": path, "during": path}
    """
    violations = []
    kept = {}
    for phase in PHASES:
        kept[phase], problems = _replication_phase(phase, (replication or {}).get(phase))
        violations += problems
    violations += _lost_nothing("before", kept["before"], LOST_FIELDS)

    local, rows = {}, {}
    for phase in TRAFFIC_PHASES:
        local[phase], rows[phase] = _local_traffic(load_timeline(timelines[phase]))

    kind = drill.get("kind")
    if kind == ONE_PROXY:
        violations += _lost_nothing("during", kept["during"], (*LOST_FIELDS, "local_missing"))
    elif kind == EVERY_PROXY:
        timeout_ms = drill["cross_region_timeout_ms"]
        violations += _judge_local_traffic(local["baseline"], local["during"], timeout_ms)
    else:
        violations.append(f"kind = {kind!r}: not one of {', '.join(KINDS)}")

    during = kept["during"] or {}
    lost = [_count(during.get(name)) for name in LOST_FIELDS]
    report = {
        "format": REPORT_FORMAT,
        "drill_id": drill["drill_id"],
        "datacentre": drill.get("datacentre"),
        "kind": kind,
        "blocked": list(drill.get("blocked") or []),
        "blocked_for": list(drill.get("blocked_for") or []),
        "port": drill.get("port"),
        "writer": drill.get("writer"),
        "cross_region_timeout_ms": drill.get("cross_region_timeout_ms"),
        "replication_before": kept["before"],
        "replication_during": kept["during"],
        "replicated_writes_lost": None if None in lost else sum(lost),
        "local_traffic": local,
        "ok": not violations,
        "violations": violations,
    }
    return report, rows


# -- Markdown -------------------------------------------------------------------------


def _pair(first, second) -> str:
    return f"{figure_text(first)} / {figure_text(second)}"


def _figures(replication: dict | None, local: dict) -> list[tuple[str, str]]:
    """The table's rows for one phase: (figure, value)."""
    repl = replication or {}
    set_delay, delete_delay = repl.get("set_delay_ms") or {}, repl.get("delete_delay_ms") or {}
    return [
        ("replicated sets arrived / lost", _pair(repl.get("set_arrived"), repl.get("set_lost"))),
        ("replicated deletes arrived / lost", _pair(repl.get("delete_arrived"), repl.get("delete_lost"))),
        ("set delay p50 / p99 (ms)", _pair(set_delay.get("p50"), set_delay.get("p99"))),
        ("delete delay p50 / p99 (ms)", _pair(delete_delay.get("p50"), delete_delay.get("p99"))),
        ("writes missing locally", figure_text(repl.get("local_missing"))),
        ("arrived on the wrong shard", figure_text(repl.get("wrong_shard"))),
        ("local client errors / requests", _pair(local["client_errors"], local["requests"])),
        ("local p99 (ms)", figure_text(local["latency_ms"]["p99"])),
        ("local steady p99 (ms)", figure_text(local["steady_p99_ms"])),
    ]


def render_markdown(report: dict, chart_stem: str) -> str:
    r = report
    before = _figures(r["replication_before"], r["local_traffic"]["baseline"])
    during = _figures(r["replication_during"], r["local_traffic"]["during"])
    port = f"port {r['port']} of " if r.get("port") is not None else ""
    lines = [
        f"# Proxy drill {r['drill_id']}",
        "",
        f"Blocked ({r['kind']} of {r['datacentre']}): connections from"
        f" {', '.join(r['blocked_for']) or '(nobody)'} to {port}{', '.join(r['blocked']) or '(none)'}."
        f" Replicated writes and local traffic through {r['writer']}.",
        "",
        f"Result: **{'OK' if r['ok'] else 'FAILED'}**."
        f" Replicated writes lost during the block: {figure_text(r['replicated_writes_lost'])}.",
    ]
    if r["violations"]:
        lines += ["", *[f"- {violation}" for violation in r["violations"]]]
    lines += ["", "| figure | before | during |", "|---|---|---|"]
    lines += [f"| {name} | {old} | {new} |" for (name, old), (_name, new) in zip(before, during, strict=True)]
    errors = [
        (phase, error) for phase in PHASES for error in (r[f"replication_{phase}"] or {}).get("errors") or []
    ]
    if errors:
        lines += ["", "## Replication check errors", "", *[f"- {phase}: {error}" for phase, error in errors]]
    lines += ["", chart_markdown(chart_stem, "local traffic")]
    return "\n".join(lines) + "\n"


# -- chart ----------------------------------------------------------------------------


def render_chart(report: dict, rows: dict[str, list[dict]]):
    """Two panels: the writer's local client errors/s and p50/p99 latency, the baseline's
    seconds then the during timeline's, the block marked where they meet."""
    # Concatenated, not on one clock: the time between the two runs (setting the block) has
    # no traffic to show.
    joined = rows["baseline"] + rows["during"]
    panels = client_panels(joined, "local client")
    markers = [("block", "#c0392b", float(len(rows["baseline"])))]
    title = f"Proxy drill {report['drill_id']}: {report['kind']} of {report['datacentre']} blocked"
    return timeline_chart(title, panels, markers, x_label="seconds of local traffic (baseline, then blocked)")


# -- files ----------------------------------------------------------------------------


def render_files(report: dict, rows: dict[str, list[dict]]) -> dict[str, bytes | str]:
    """{file name: content} for proxy-<drill_id>.json, .md, .png and .svg."""
    stem = f"proxy-{report['drill_id']}"
    return {
        f"{stem}.json": json.dumps(report, indent=2, sort_keys=True) + "\n",
        f"{stem}.md": render_markdown(report, stem),
        **figure_files(render_chart(report, rows), stem),
    }
