"""The report of one failover drill: JSON for machines, Markdown for people, an SVG timeline.

Inputs: the traffic timeline (traffic.py), the verifier's result of each phase
(failover_verify.py), the block/unblock times and how many drill rules were left on the
shard afterwards. The SVG is written by hand (no plotting libraries on the controller):
three panels over the drill's seconds, errors/s, p50/p99 latency and gutter hits/s, with
the block, unblock and re-admission marked.
"""

from __future__ import annotations

import json
import os
import time
from xml.sax.saxutils import escape

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
    """Returns the report (a JSON-ready dict) and the per-second rows the SVG draws
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


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"
    return str(value)


def render_markdown(report: dict, svg_name: str) -> str:
    r = report
    lines = [
        f"# Failover drill {r['drill_id']}",
        "",
        f"Shard **{r['shard']}** ({r['datacentre']}) blocked in **{r['mode']}** mode,"
        f" rejoin policy **{r['rejoin_policy']}**, traffic through {r['router']}."
        f" Result: **{'OK' if r['ok'] else 'FAILED'}**.",
        "",
        f"![timeline]({svg_name})",
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
        "on_gutter",
        "untouched_elsewhere",
        "gutter_hit_ratio",
        "gutter_expired_within_ttl",
        "readmission_wait_s",
        "rules_left",
        "block_duration_s",
        "drill_wall_s",
    ]
    lines += [f"| `{name}` | {_fmt(r.get(name))} |" for name in headline]
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
            f"| {window} | {lat['requests']} | {_fmt(lat['p50'])} | {_fmt(lat['p99'])} | {_fmt(lat['max'])} |"
        )
    lines += ["", "## Timestamps (UTC)", ""]
    lines += [f"- {name}: {value or '-'}" for name, value in r["timestamps"].items()]
    lines += ["", "## Verification", ""]
    for phase, problems in r["verify_violations"].items():
        lines.append(f"- {phase}: " + ("ok" if not problems else "; ".join(problems)))
    return "\n".join(lines) + "\n"


# -- SVG ------------------------------------------------------------------------------

_WIDTH, _PANEL_H, _LEFT, _RIGHT, _TOP, _GAP = 900, 150, 70, 20, 40, 40


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def render_svg(report: dict, rows: list[dict]) -> str:
    events = report["events_unix"]
    started_at = events["started_at"]
    seconds = max(1, len(rows))
    plot_w = _WIDTH - _LEFT - _RIGHT
    panels = [
        (
            "client errors/s (error + timeout)",
            [("errors/s", "#c0392b", [r["errors"] + r["timeouts"] for r in rows])],
        ),
        (
            "client latency, ms",
            [
                ("p50", "#2471a3", [r["p50_ms"] for r in rows]),
                ("p99", "#e67e22", [r["p99_ms"] for r in rows]),
            ],
        ),
        ("gutter get hits/s", [("gutter hits/s", "#1e8449", [r["gutter_hits"] for r in rows])]),
    ]
    height = _TOP + len(panels) * (_PANEL_H + _GAP) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}"'
        f' viewBox="0 0 {_WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{_WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{_LEFT}" y="20" font-size="14" font-weight="bold">'
        + escape(f"Drill {report['drill_id']}: {report['shard']} {report['mode']}")
        + escape(f", rejoin {report['rejoin_policy']}")
        + "</text>",
    ]

    def x_of(second: float) -> float:
        return _LEFT + plot_w * second / seconds

    markers = []
    colours = {"blocked_at": "#c0392b", "unblocked_at": "#1e8449", "readmitted_at": "#7f8c8d"}
    for name, colour in colours.items():
        ts = events.get(name)
        if ts is not None and started_at is not None and 0 <= ts - started_at <= seconds:
            markers.append((name.replace("_at", ""), colour, x_of(ts - started_at)))

    for index, (title, series) in enumerate(panels):
        top = _TOP + index * (_PANEL_H + _GAP)
        bottom = top + _PANEL_H
        values = [v for _label, _colour, data in series for v in data if v is not None]
        y_max = _nice_max(max(values, default=0))
        out.append(f'<text x="{_LEFT}" y="{top - 6}" font-weight="bold">{escape(title)}</text>')
        out.append(
            f'<rect x="{_LEFT}" y="{top}" width="{plot_w}" height="{_PANEL_H}" fill="none" stroke="#999"/>'
        )
        for fraction in (0, 0.5, 1):
            y = bottom - _PANEL_H * fraction
            out.append(
                f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(y_max * fraction)}</text>'
            )
            if fraction > 0:
                out.append(
                    f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
                )
        step = max(1, int(_nice_max(seconds / 10)))
        for second in range(0, seconds + 1, step):
            x = x_of(second)
            out.append(f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle">{second}s</text>')
        for legend_i, (label, colour, data) in enumerate(series):
            points = [
                f"{x_of(s + 0.5):.1f},{bottom - _PANEL_H * min(v, y_max) / y_max:.1f}"
                for s, v in enumerate(data)
                if v is not None
            ]
            if points:
                joined = " ".join(points)
                out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{joined}"/>')
            lx = _LEFT + plot_w - 110 * (legend_i + 1)
            out.append(f'<rect x="{lx}" y="{top + 6}" width="10" height="10" fill="{colour}"/>')
            out.append(f'<text x="{lx + 14}" y="{top + 15}">{escape(label)}</text>')
        for label, colour, x in markers:
            out.append(
                f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="{colour}"'
                ' stroke-dasharray="4,3" stroke-width="1.2"/>'
            )
            if index == 0:
                # A marker near the right edge takes its label on its left, inside the picture.
                anchor, dx = ("end", -3) if x > _WIDTH - _RIGHT - 80 else ("start", 3)
                out.append(
                    f'<text x="{x + dx:.1f}" y="{top + 12}" fill="{colour}" text-anchor="{anchor}">'
                    f"{escape(label)}</text>"
                )
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -- files ----------------------------------------------------------------------------


def render_files(report: dict, rows: list[dict]) -> dict[str, str]:
    """{suffix: content} for .json, .md and .svg."""
    drill_id = report["drill_id"]
    return {
        ".json": json.dumps(report, indent=2, sort_keys=True) + "\n",
        ".md": render_markdown(report, f"{drill_id}.svg"),
        ".svg": render_svg(report, rows),
    }


def write_files(out_dir: str, drill_id: str, files: dict[str, str]) -> dict[str, dict]:
    """Writes each file unless its content is unchanged; {path: {changed, before}}."""
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for suffix, content in files.items():
        path = os.path.join(out_dir, drill_id + suffix)
        before = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                before = handle.read()
        changed = before != content
        if changed:
            tmp = f"{path}.tmp.{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(content)
            os.replace(tmp, path)
        written[path] = {"changed": changed}
    return written
