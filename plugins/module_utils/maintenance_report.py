"""The rolling maintenance's report: per host and in total, from the progress log and the
client traffic's timeline. JSON for machines, Markdown for people, an SVG timeline.
"""

from __future__ import annotations

import json
import time
from xml.sax.saxutils import escape

from ansible_collections.mcfleet.fleet.plugins.module_utils.maintenance_progress import STEPS
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import load_timeline, per_second

REPORT_FORMAT = 1


def _iso(epoch):
    if epoch is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


def _errors(requests, start, end):
    window = [r for r in requests if start <= r["t"] < end]
    return len(window), sum(1 for r in window if r["r"] in ("error", "timeout"))


def build_report(entries: list, timeline_path: str | None, status: str) -> dict:
    """`entries`: the progress log (maintenance_progress); `status`: finished | stopped."""
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
        "mean_overhead_s": round(sum(h["overhead_s"] for h in maintained) / len(maintained), 3)
        if maintained
        else None,
        "versions_before": {host: data.get("version") for host, data in before.items()},
    }


def render_markdown(report: dict, svg_name: str) -> str:
    lines = [
        f"# Rolling {report['action']} of {report['datacentre']}: {report['status']}",
        "",
        f"- reason: {report['reason']}",
        f"- target: {report['target_release'] or 'same release'} {report['method'] or ''}".rstrip(),
        f"- started: {report['started_at']}, wall time {report['wall_s']} s, "
        f"batch size {report['batch_size']}",
        f"- client requests {report['requests']}, client errors {report['client_errors']}",
        f"- hosts maintained: {report['maintained']}, mean mcfleet overhead per host "
        f"(wall minus act and warm-up): {report['mean_overhead_s']} s",
        "",
        "| host | status | out (s) | errors while out | hit ratio before | after | wall (s) | act (s) "
        "| overhead (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for h in report["hosts"]:

        def fmt(value):
            return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))

        lines.append(
            f"| {h['host']} | {h['status']} | {fmt(h.get('out_s'))} "
            f"| {fmt(h.get('client_errors_while_out'))} "
            f"| {fmt(h.get('hit_ratio_before'))} | {fmt(h.get('hit_ratio_after'))} | {fmt(h.get('wall_s'))} "
            f"| {fmt(h.get('step_seconds', {}).get('act'))} | {fmt(h.get('overhead_s'))} |"
        )
    lines += ["", "Seconds per step:", "", "| host | " + " | ".join(STEPS[1:]) + " |"]
    lines.append("|---" * len(STEPS) + "|")
    for h in report["hosts"]:
        seconds = h.get("step_seconds", {})
        lines.append(
            f"| {h['host']} | " + " | ".join(str(seconds.get(name, "")) for name in STEPS[1:]) + " |"
        )
    lines += ["", f"![timeline]({svg_name})", ""]
    return "\n".join(lines)


def render_svg(report: dict, entries: list, timeline_path: str | None) -> str:
    """Client errors/s over the run, and each host's time out of service as a bar."""
    width, left, right, row_h = 900, 110, 20, 18
    start = entries[0]["t"] if entries else 0
    end = entries[-1]["t"] if entries else 1
    span = max(1.0, end - start)
    rows = per_second(load_timeline(timeline_path), origin=start) if timeline_path else []
    hosts = [h for h in report["hosts"] if "block" in h["steps"]]
    chart_top, chart_h = 40, 120
    bars_top = chart_top + chart_h + 30
    height = bars_top + row_h * max(1, len(hosts)) + 30

    def x_of(t):
        return left + (width - left - right) * (t - start) / span

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif"'
        ' font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">'
        + escape(f"Rolling {report['action']} of {report['datacentre']} ({report['status']})")
        + "</text>",
        f'<text x="{left}" y="{chart_top - 6}" font-weight="bold">client errors/s</text>',
        f'<rect x="{left}" y="{chart_top}" width="{width - left - right}" height="{chart_h}" fill="none"'
        ' stroke="#999"/>',
    ]
    peak = max([r["errors"] + r["timeouts"] for r in rows] + [1])
    bottom = chart_top + chart_h
    points = " ".join(
        f"{x_of(start + i + 0.5):.1f},{bottom - chart_h * (r['errors'] + r['timeouts']) / peak:.1f}"
        for i, r in enumerate(rows)
        if start + i <= end
    )
    if points:
        out.append(f'<polyline fill="none" stroke="#c0392b" stroke-width="1.5" points="{points}"/>')
    out.append(f'<text x="{left - 6}" y="{chart_top + 4}" text-anchor="end">{peak}</text>')
    out.append(f'<text x="{left - 6}" y="{chart_top + chart_h + 4}" text-anchor="end">0</text>')
    out.append(
        f'<text x="{left}" y="{bars_top - 6}" font-weight="bold">out of service (block to unblock)</text>'
    )
    for i, host in enumerate(hosts):
        entry_steps = {e["step"]: e["t"] for e in entries if e["host"] == host["host"]}
        blocked, back = (
            entry_steps.get("block"),
            entry_steps.get("unblock") or entry_steps.get("failed") or end,
        )
        y = bars_top + i * row_h
        colour = "#c0392b" if host["status"].startswith("FAILED") else "#2471a3"
        out.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{escape(host["host"])}</text>')
        out.append(
            f'<rect x="{x_of(blocked):.1f}" y="{y + 2}" width="{max(1.0, x_of(back) - x_of(blocked)):.1f}"'
            f' height="{row_h - 4}" fill="{colour}"/>'
        )
    out.append(f'<text x="{left}" y="{height - 8}">0 s</text>')
    out.append(f'<text x="{width - right}" y="{height - 8}" text-anchor="end">{span:.0f} s</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_files(report: dict, entries: list, timeline_path: str | None, stem: str) -> dict:
    return {
        f"{stem}.json": json.dumps(report, indent=2, sort_keys=True) + "\n",
        f"{stem}.md": render_markdown(report, f"{stem}.svg"),
        f"{stem}.svg": render_svg(report, entries, timeline_path),
    }
