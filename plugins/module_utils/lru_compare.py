"""Side-by-side LRU comparison of two memcached servers that received the same traffic
(a shadow copy of one shard's traffic): the report of playbooks/shadow_lru.yml.

Each side is read twice, once both are warm (memory full, evicting) and at the end: the
counters of `stats` are compared over that window (hit ratio, evictions, reclaimed,
expired_unfetched, evicted_unfetched, evicted_active, ...), the per-class state of
`stats items` and `stats slabs` at the end. Slab classes are matched by chunk size, not
by id: with another growth factor (`-f`) the same id holds other sizes. The classes of the
baseline define the rows (items up to that chunk size); each candidate class joins the row
of the smallest baseline chunk size that holds it. Names of the counters:
https://github.com/memcached/memcached/blob/master/doc/protocol.txt (General-purpose
statistics, Item statistics, Slab statistics).
"""

from __future__ import annotations

import json
import textwrap
import time

from ansible_collections.mcfleet.fleet.plugins.module_utils.charts import (
    chart_markdown,
    figure_files,
    grouped_bar_chart,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import (
    MemcacheClient,
    MemcacheError,
)

REPORT_FORMAT = 1
# Counters compared over the window (deltas), as `stats` names them.
WINDOW_COUNTERS = (
    "get_hits",
    "get_misses",
    "cmd_get",
    "cmd_set",
    "evictions",
    "reclaimed",
    "expired_unfetched",
    "evicted_unfetched",
    "evicted_active",
    "crawler_reclaimed",
    "moves_to_cold",
    "moves_to_warm",
    "slabs_moved",
    "total_items",
)
# Figures the Markdown's main table shows, in order.
HEADLINE = ("hit_ratio", "evictions", "reclaimed", "expired_unfetched", "evicted_unfetched", "evicted_active")
SETTINGS_SHOWN = (
    "growth_factor",
    "maxbytes",
    "chunk_size",
    "slab_chunk_max",
    "item_size_max",
    "lru_segmented",
)
# A hit ratio within this many points of the baseline's is the same for the verdict.
HIT_RATIO_TOLERANCE = 0.01
# Slab memory within this factor of the baseline's counts as the same memory.
MEMORY_TOLERANCE = 1.1
SIDES = ("baseline", "candidate")


class CompareError(ValueError):
    """A snapshot lacks what the comparison needs; the message names the side and the field."""


COMPARISONS = ("release", "growth_factor")
LAB_PORT = 11211


def lab_servers(
    comparison: str, shard: dict, shard_settings: dict, addresses: list, choices: dict
) -> list[dict]:
    """The lab's baseline and candidate servers: the baseline is a copy of the shard (its
    release, growth factor, smallest chunk and threads), the candidate differs in one thing,
    the release (`release`) or the growth factor (`growth_factor`, the baseline then takes
    choices["baseline_growth_factor"]). Both get choices["memory_mb"].

    choices: memory_mb, candidate_release, baseline_growth_factor, candidate_growth_factor.
    """
    if comparison not in COMPARISONS:
        raise CompareError(f"lru_comparison: {comparison!r} is not one of {', '.join(COMPARISONS)}")
    if len(addresses) != 2:
        raise CompareError(f"lru_lab_addresses: {addresses!r} is not two addresses")
    release = shard.get("release") or "bookworm"
    growth = str(shard_settings["growth_factor"])
    if comparison == "release":
        sides = [(release, growth), (str(choices["candidate_release"]), growth)]
    else:
        sides = [
            (release, str(choices["baseline_growth_factor"])),
            (release, str(choices["candidate_growth_factor"])),
        ]
    servers = []
    for name, address, (side_release, side_growth) in zip(
        ("lru-baseline", "lru-candidate"), addresses, sides, strict=True
    ):
        server = {
            "host": name,
            "address": str(address),
            "port": LAB_PORT,
            "release": side_release,
            "growth_factor": side_growth,
            "min_slab_bytes": int(shard_settings["chunk_size"]),
            "threads": int(shard_settings["num_threads"]),
            "memory_mb": int(choices["memory_mb"]),
        }
        server["description"] = f"{side_release}, -m {server['memory_mb']} -f {side_growth}"
        servers.append(server)
    return servers


def memcached_conf(server: dict) -> str:
    """/etc/memcached.conf of a lab server (Debian's wrapper passes each "-" line to memcached)."""
    options = [
        "-u memcache",
        f"-l {server['address']}",
        f"-p {server['port']}",
        f"-m {server['memory_mb']}",
        "-c 1024",
        f"-t {server['threads']}",
        f"-f {server['growth_factor']}",
        f"-n {server['min_slab_bytes']}",
    ]
    return "# mcfleet LRU comparison server (playbooks/shadow_lru.yml)\n" + "\n".join(options) + "\n"


def read_snapshot(address: str, port: int, timeout_s: float = 2.0) -> dict:
    """`stats`, `stats items`, `stats slabs` and `stats settings` of one memcached, read one
    after the other on one connection (a few milliseconds apart), with the time read."""
    try:
        with MemcacheClient(address, port, timeout_s=timeout_s) as client:
            read_at = time.time()
            snapshot = {
                "stats": client.stats(),
                "items": client.stats("items"),
                "slabs": client.stats("slabs"),
                "settings": client.stats("settings"),
            }
    except (MemcacheError, OSError) as error:
        raise CompareError(f"{address}:{port} does not answer: {error}") from None
    return {**snapshot, "read_at": round(read_at, 3)}


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return int(float(value))


def parse_items(stats_items: dict) -> dict[int, dict]:
    """`stats items` ({"items:5:evicted": "12", ...}) as {5: {"evicted": 12, ...}}."""
    classes: dict[int, dict] = {}
    for name, value in stats_items.items():
        parts = name.split(":")
        if len(parts) == 3 and parts[0] == "items" and parts[1].isdigit():
            classes.setdefault(int(parts[1]), {})[parts[2]] = _int(value)
    return classes


def parse_slabs(stats_slabs: dict) -> dict[int, dict]:
    """`stats slabs` ({"5:chunk_size": "240", ..., "active_slabs": "9"}) per class id."""
    classes: dict[int, dict] = {}
    for name, value in stats_slabs.items():
        parts = name.split(":")
        if len(parts) == 2 and parts[0].isdigit():
            classes.setdefault(int(parts[0]), {})[parts[1]] = _int(value)
    return classes


def slab_classes(snapshot: dict) -> list[dict]:
    """The classes that hold memory or items, with the figures the report compares."""
    items = parse_items(snapshot.get("items") or {})
    slabs = parse_slabs(snapshot.get("slabs") or {})
    settings = snapshot.get("settings") or {}
    page_bytes = _int(settings.get("slab_page_size") or settings.get("item_size_max") or 1048576)
    classes = []
    for class_id in sorted(set(items) | set(slabs)):
        slab, item = slabs.get(class_id, {}), items.get(class_id, {})
        if "chunk_size" not in slab:
            continue
        classes.append(
            {
                "class_id": class_id,
                "chunk_size": slab["chunk_size"],
                "pages": slab.get("total_pages", 0),
                "memory_bytes": slab.get("total_pages", 0) * page_bytes,
                "used_chunks": slab.get("used_chunks", 0),
                "items": item.get("number", 0),
                "age_s": item.get("age", 0),
                "evicted": item.get("evicted", 0),
                "evicted_time_s": item.get("evicted_time", 0),
                "outofmemory": item.get("outofmemory", 0),
                "number_hot": item.get("number_hot", 0),
                "number_warm": item.get("number_warm", 0),
                "number_cold": item.get("number_cold", 0),
            }
        )
    return classes


def match_classes(baseline: list[dict], candidate: list[dict]) -> list[dict]:
    """Rows of classes matched by chunk size: a row per baseline class (items up to its
    chunk size); a candidate class joins the row of the smallest baseline chunk size at or
    above its own, and one larger than every baseline class gets a row of its own."""
    bounds = sorted(c["chunk_size"] for c in baseline)
    rows: dict[int, dict] = {}

    def row(upper: int) -> dict:
        return rows.setdefault(upper, {"chunk_size": upper, "baseline": [], "candidate": []})

    for cls in baseline:
        row(cls["chunk_size"])["baseline"].append(cls)
    for cls in candidate:
        upper = next((b for b in bounds if b >= cls["chunk_size"]), cls["chunk_size"])
        row(upper)["candidate"].append(cls)
    matched = []
    previous = 0
    for upper in sorted(rows):
        entry = rows[upper]
        matched.append(
            {
                "chunk_size": upper,
                "size_range": [previous + 1, upper],
                "baseline": _aggregate(entry["baseline"]),
                "candidate": _aggregate(entry["candidate"]),
            }
        )
        previous = upper
    return matched


def _aggregate(classes: list[dict]) -> dict | None:
    if not classes:
        return None
    return {
        "class_ids": [c["class_id"] for c in classes],
        "chunk_sizes": [c["chunk_size"] for c in classes],
        "items": sum(c["items"] for c in classes),
        "evicted": sum(c["evicted"] for c in classes),
        "memory_bytes": sum(c["memory_bytes"] for c in classes),
        "pages": sum(c["pages"] for c in classes),
        # The oldest item of the row: how long an item of these sizes survives.
        "age_s": max(c["age_s"] for c in classes),
        "outofmemory": sum(c["outofmemory"] for c in classes),
    }


def hit_ratio(hits: int, misses: int) -> float | None:
    return round(hits / (hits + misses), 4) if hits + misses else None


def side_figures(name: str, warm: dict, end: dict) -> dict:
    """One side's counters over the window from `warm` to `end`, and its state at the end."""
    for label, snapshot in (("warm", warm), ("end", end)):
        if not (snapshot or {}).get("stats"):
            raise CompareError(f"{name}.{label}: no `stats` in the snapshot")
    before, after = warm["stats"], end["stats"]
    window = {c: _int(after.get(c, 0)) - _int(before.get(c, 0)) for c in WINDOW_COUNTERS}
    settings = end.get("settings") or {}
    return {
        "version": after.get("version"),
        "window_s": round(float(end.get("read_at", 0)) - float(warm.get("read_at", 0)), 3),
        "hit_ratio": hit_ratio(window["get_hits"], window["get_misses"]),
        **window,
        "curr_items": _int(after.get("curr_items", 0)),
        "bytes": _int(after.get("bytes", 0)),
        "limit_maxbytes": _int(after.get("limit_maxbytes", 0)),
        # Memory the slab classes hold: every class in use keeps at least one page, so with a
        # small -m and many classes it exceeds limit_maxbytes (memcached's slabs.c grants the
        # first page of a class regardless of the limit).
        "total_malloced": _int((end.get("slabs") or {}).get("total_malloced", 0)),
        "settings": {k: settings.get(k) for k in SETTINGS_SHOWN if k in settings},
        "classes": slab_classes(end),
    }


def verdict(baseline: dict, candidate: dict, names: dict) -> str:
    """One line: the candidate's hit ratio and evictions against the baseline's."""
    a, b = baseline["hit_ratio"], candidate["hit_ratio"]
    if a is None or b is None:
        return f"no verdict: {names['baseline' if a is None else 'candidate']} served no gets in the window"
    delta = b - a
    if delta > HIT_RATIO_TOLERANCE:
        outcome = "better"
    elif delta < -HIT_RATIO_TOLERANCE:
        outcome = "worse"
    else:
        outcome = "the same within 1 point"
    ev_a, ev_b = baseline["evictions"], candidate["evictions"]
    evictions = f"evictions {ev_b} vs {ev_a}"
    if ev_a:
        evictions += f" ({(ev_b - ev_a) / ev_a:+.0%})"
    ratios = f"hit ratio {b:.3f} vs {a:.3f} ({delta * 100:+.1f} points)"
    line = f"{names['candidate']} is {outcome}: {ratios}, {evictions}"
    mem_a, mem_b = baseline.get("total_malloced") or 0, candidate.get("total_malloced") or 0
    if mem_a and mem_b and not 1 / MEMORY_TOLERANCE <= mem_b / mem_a <= MEMORY_TOLERANCE:
        line += (
            f"; but not at equal memory: its slab classes hold {mem_b / 1048576:.0f} MB against "
            f"{mem_a / 1048576:.0f} MB (each class in use keeps at least one page)"
        )
    return line


def build_report(comparison: dict, snapshots: dict, traffic: dict | None = None) -> dict:
    """comparison: {id, title, shadow, baseline: {name, description}, candidate: {...}};
    snapshots: {"baseline": {"warm": snap, "end": snap}, "candidate": {...}} where a
    snapshot is {stats, items, slabs, settings, read_at} (memcached_stats' reading)."""
    figures = {}
    for side in SIDES:
        pair = snapshots.get(side) or {}
        figures[side] = side_figures(side, pair.get("warm"), pair.get("end"))
    names = {side: comparison[side]["name"] for side in SIDES}
    rows = match_classes(figures["baseline"]["classes"], figures["candidate"]["classes"])
    return {
        "format": REPORT_FORMAT,
        "id": comparison["id"],
        "title": comparison.get("title") or comparison["id"],
        "shadow": comparison.get("shadow"),
        "sides": {side: {**comparison[side], **figures[side]} for side in SIDES},
        "slab_rows": rows,
        "traffic": traffic,
        "verdict": verdict(figures["baseline"], figures["candidate"], names),
    }


# -- Markdown and chart ----------------------------------------------------------------


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _mb(value) -> str:
    return "-" if value is None else f"{value / 1048576:.1f}"


def render_markdown(report: dict, chart_stem: str) -> str:
    base, cand = report["sides"]["baseline"], report["sides"]["candidate"]
    lines = [
        f"# LRU comparison {report['id']}: {report['title']}",
        "",
        f"**Verdict:** {report['verdict']}",
        "",
        f"- baseline: **{base['name']}**, {base.get('description', '')} (memcached {base['version']})",
        f"- candidate: **{cand['name']}**, {cand.get('description', '')} (memcached {cand['version']})",
    ]
    shadow = report.get("shadow")
    if shadow:
        lines.append(
            f"- traffic: a shadow copy of {shadow['shard']}'s traffic ({shadow['datacentre']}, key fraction "
            f"{shadow['key_fraction'][0]}..{shadow['key_fraction'][1]} of the shard's share) "
            f"sent by {', '.join(shadow['routers'])}"
        )
    traffic = report.get("traffic") or {}
    if traffic:
        lines.append(
            f"- load: {traffic.get('requests')} requests over {traffic.get('key_count')} keys "
            f"(Zipf s={traffic.get('zipf_s')}), client hit ratio {_fmt(traffic.get('hit_ratio'))}"
        )
    lines += [
        f"- window: from both warm (evicting) to the end: {_fmt(base['window_s'])} s (baseline), "
        f"{_fmt(cand['window_s'])} s (candidate)",
        "",
        chart_markdown(chart_stem, "LRU comparison"),
        "",
        "| figure (over the window) | baseline | candidate |",
        "|---|---|---|",
    ]
    for name in (
        *HEADLINE,
        "get_hits",
        "get_misses",
        "cmd_set",
        "crawler_reclaimed",
        "moves_to_cold",
        "slabs_moved",
    ):
        lines.append(f"| `{name}` | {_fmt(base.get(name))} | {_fmt(cand.get(name))} |")
    for name in ("curr_items", "bytes", "limit_maxbytes", "total_malloced"):
        lines.append(f"| `{name}` (end) | {_fmt(base.get(name))} | {_fmt(cand.get(name))} |")
    lines += ["", "Settings (`stats settings`):", "", "| setting | baseline | candidate |", "|---|---|---|"]
    for name in SETTINGS_SHOWN:
        lines.append(
            f"| `{name}` | {_fmt(base['settings'].get(name))} | {_fmt(cand['settings'].get(name))} |"
        )
    lines += [
        "",
        "## Slab classes, matched by chunk size (state at the end)",
        "",
        "| item size (bytes) | classes (b / c) | evicted (b / c) | age s (b / c) | memory MB (b / c) "
        "| items (b / c) |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["slab_rows"]:
        b, c = row["baseline"] or {}, row["candidate"] or {}

        def pair(key, fmt=_fmt, b=b, c=c):
            return f"{fmt(b.get(key)) if b else '-'} / {fmt(c.get(key)) if c else '-'}"

        ids_b, ids_c = (",".join(map(str, side.get("class_ids", []))) or "-" for side in (b, c))
        classes = f"{ids_b} / {ids_c}"
        lines.append(
            f"| {row['size_range'][0]}..{row['size_range'][1]} | {classes} | {pair('evicted')} "
            f"| {pair('age_s')} | {pair('memory_bytes', _mb)} | {pair('items')} |"
        )
    return "\n".join(lines) + "\n"


def render_chart(report: dict):
    base, cand = report["sides"]["baseline"], report["sides"]["candidate"]
    colours = {"baseline": "#2471a3", "candidate": "#e67e22"}
    labels = {side: f"{side}: {report['sides'][side]['name']}" for side in SIDES}
    rows = [
        r
        for r in report["slab_rows"]
        if (r["baseline"] or {}).get("pages") or (r["candidate"] or {}).get("pages")
    ]
    categories = [str(r["chunk_size"]) for r in rows]

    def per_row(key, scale=1.0):
        return [(side, [None if r[side] is None else r[side][key] / scale for r in rows]) for side in SIDES]

    counters = ["evictions", "reclaimed", "expired_unfetched", "evicted_unfetched", "evicted_active"]
    panels = [
        {
            "title": "hit ratio over the window (%)",
            "categories": ["hit ratio"],
            "series": [
                (labels[s], colours[s], [None if f["hit_ratio"] is None else f["hit_ratio"] * 100])
                for s, f in (("baseline", base), ("candidate", cand))
            ],
        },
        {
            "title": "items over the window",
            "categories": counters,
            "series": [
                (labels[s], colours[s], [f[c] for c in counters])
                for s, f in (("baseline", base), ("candidate", cand))
            ],
        },
    ]
    for key, title, scale in (
        ("evicted", "evictions per slab class (by chunk size, bytes)", 1.0),
        ("age_s", "age of the oldest item per slab class, s", 1.0),
        ("memory_bytes", "memory per slab class, MB", 1048576.0),
    ):
        panels.append(
            {
                "title": title,
                "categories": categories,
                "series": [(labels[side], colours[side], values) for side, values in per_row(key, scale)],
            }
        )
    # Wrapped: a long title would run off the figure's edges.
    return grouped_bar_chart(textwrap.fill(f"LRU comparison {report['id']}: {report['title']}", 75), panels)


def render_files(report: dict) -> dict[str, bytes | str]:
    stem = f"lru-{report['id']}"
    return {
        f"{stem}.json": json.dumps(report, indent=2, sort_keys=True) + "\n",
        f"{stem}.md": render_markdown(report, stem),
        **figure_files(render_chart(report), stem),
    }
