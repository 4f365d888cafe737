"""Charts of mcfleet's reports (drill, rolling maintenance, LRU comparison), drawn with
matplotlib's Agg backend and saved as PNG and SVG, and the report files' writer.

Figures are built with `matplotlib.figure.Figure` and no pyplot, so nothing global
(no interactive backend, no figure registry) is touched; the Agg canvas renders them
(https://matplotlib.org/stable/gallery/user_interfaces/web_application_server_sgskip.html).
The same inputs give the same bytes: no date or software metadata, a fixed SVG id salt
(https://matplotlib.org/stable/users/explain/customizing.html, `svg.hashsalt`), and the
SVG keeps its text as text (`svg.fonttype: none`) so labels can be read and searched.
Each plotted series, marker and bar carries a gid (an SVG element id: `series-<label>`,
`marker-<label>-<panel>`, `span-<label>`, `bar-<panel>-<label>-<category>`): the tests and
any reader can find them by name.
"""

from __future__ import annotations

import io
import os
import traceback

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.mcfleet.fleet.plugins.module_utils.safe_files import replace_file

# matplotlib is imported on first use, not here: importing it takes about a second, and the
# filter plugin imports this file (through lru_compare) in every Ansible worker that runs a
# task using one of the collection's filters, for every host.
_MATPLOTLIB = {}


def _matplotlib():
    """{"matplotlib", "Figure", "FigureCanvasAgg"}, or {"error": traceback} when it cannot be imported."""
    if not _MATPLOTLIB:
        try:
            import matplotlib

            matplotlib.use("Agg")
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            _MATPLOTLIB.update(matplotlib=matplotlib, Figure=Figure, FigureCanvasAgg=FigureCanvasAgg)
        except ImportError:  # the modules report it with missing_required_lib
            _MATPLOTLIB["error"] = traceback.format_exc()
    return _MATPLOTLIB


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_SAVE_RC = {"svg.hashsalt": "mcfleet", "svg.fonttype": "none", "font.size": 9}
_PANEL_HEIGHT_IN = 2.2
_WIDTH_IN = 10.0


def fail_without_matplotlib(module) -> None:
    """Ends an Ansible module with the standard missing-library message when matplotlib is absent."""
    error = _matplotlib().get("error")
    if error:
        module.fail_json(msg=missing_required_lib("matplotlib"), exception=error)


def _require():
    loaded = _matplotlib()
    if "error" in loaded:
        raise ImportError("matplotlib is required to draw report charts:\n" + loaded["error"])
    return loaded


def _new_figure(title: str, panel_count: int, share_x: bool):
    loaded = _require()
    figure = loaded["Figure"](figsize=(_WIDTH_IN, 0.8 + _PANEL_HEIGHT_IN * panel_count))
    loaded["FigureCanvasAgg"](figure)
    axes = figure.subplots(panel_count, 1, squeeze=False, sharex=share_x)[:, 0]
    figure.suptitle(title, fontweight="bold")
    return figure, list(axes)


def timeline_chart(title: str, panels: list[dict], markers: list[tuple] = (), x_label: str = "seconds"):
    """Panels over one time axis, stacked.

    panels: {"title", "lines": [(label, colour, xs, ys)], "spans": [(label, colour, start, end)]}
    (a panel has lines, or spans drawn as one bar per label); markers: (label, colour, x),
    a dashed vertical line on every panel, labelled on the first.
    """
    figure, axes = _new_figure(title, len(panels), share_x=True)
    for index, (panel, ax) in enumerate(zip(panels, axes, strict=True)):
        ax.set_title(panel["title"], loc="left", fontsize=9, fontweight="bold")
        for label, colour, xs, ys in panel.get("lines", []):
            points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
            (line,) = ax.plot(
                [p[0] for p in points], [p[1] for p in points], color=colour, label=label, lw=1.4
            )
            line.set_gid(f"series-{label}")
        spans = panel.get("spans", [])
        for row, (label, colour, start, end) in enumerate(spans):
            bars = ax.broken_barh([(start, max(end - start, 1e-3))], (row - 0.4, 0.8), facecolors=colour)
            bars.set_gid(f"span-{label}")
        if spans:
            ax.set_yticks(range(len(spans)), [label for label, *_rest in spans])
            ax.set_ylim(-0.6, len(spans) - 0.4)
        else:
            ax.set_ylim(bottom=0)
            ax.grid(axis="y", color="#eeeeee")
        for label, colour, x in markers:
            mark = ax.axvline(x, color=colour, ls="--", lw=1.1)
            mark.set_gid(f"marker-{label}-{index}")
            if index == 0:
                ax.annotate(
                    label,
                    (x, 1.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(3, -10),
                    textcoords="offset points",
                    color=colour,
                )
        if panel.get("lines"):
            ax.legend(loc="upper right", fontsize=8, frameon=False)
    axes[-1].set_xlabel(x_label)
    figure.tight_layout()
    return figure


def grouped_bar_chart(title: str, panels: list[dict]):
    """Side-by-side bars per category, one panel per measure.

    panels: {"title", "categories": [str], "series": [(label, colour, values)]};
    a value of None leaves its bar out (a category one side does not have).
    """
    figure, axes = _new_figure(title, len(panels), share_x=False)
    for panel_index, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
        ax.set_title(panel["title"], loc="left", fontsize=9, fontweight="bold")
        categories, series = panel["categories"], panel["series"]
        width = 0.8 / max(1, len(series))
        for offset, (label, colour, values) in enumerate(series):
            xs = [i + (offset - (len(series) - 1) / 2) * width for i in range(len(categories))]
            kept = [(x, v, c) for x, v, c in zip(xs, values, categories, strict=True) if v is not None]
            bars = ax.bar([k[0] for k in kept], [k[1] for k in kept], width=width, color=colour, label=label)
            for patch, (_x, _v, category) in zip(bars, kept, strict=True):
                patch.set_gid(f"bar-{panel_index}-{label}-{category}")
        ax.set_xticks(range(len(categories)), categories, rotation=45 if len(categories) > 8 else 0)
        ax.grid(axis="y", color="#eeeeee")
        ax.set_axisbelow(True)
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    figure.tight_layout()
    return figure


def figure_files(figure, stem: str) -> dict[str, bytes | str]:
    """{stem.png: bytes, stem.svg: text} of one figure, the same bytes for the same figure."""
    out: dict[str, bytes | str] = {}
    with _require()["matplotlib"].rc_context(_SAVE_RC):
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=100, metadata={"Software": None})
        svg = io.StringIO()
        figure.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    out[f"{stem}.png"] = png.getvalue()
    out[f"{stem}.svg"] = svg.getvalue()
    return out


def client_panels(rows: list[dict], whose: str = "client") -> list[dict]:
    """The two panels every traffic chart starts with, from a traffic timeline's per-second
    rows: errors/s (error + timeout) and p50/p99 latency."""
    seconds = [index + 0.5 for index in range(len(rows))]
    return [
        {
            "title": f"{whose} errors/s (error + timeout)",
            "lines": [("errors/s", "#c0392b", seconds, [r["errors"] + r["timeouts"] for r in rows])],
        },
        {
            "title": f"{whose} latency, ms",
            "lines": [
                ("p50", "#2471a3", seconds, [r["p50_ms"] for r in rows]),
                ("p99", "#e67e22", seconds, [r["p99_ms"] for r in rows]),
            ],
        },
    ]


def figure_text(value) -> str:
    """A figure as a report's Markdown shows it: '-' for none, up to 3 decimals, no trailing zeros."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"
    return str(value)


def chart_markdown(stem: str, alt: str) -> str:
    """The Markdown that shows the chart (PNG) and links its vector copy (SVG)."""
    return f"![{alt}]({stem}.png)\n\n[{alt}, SVG]({stem}.svg)"


def write_files(out_dir: str, files: dict[str, bytes | str], check_mode: bool = False) -> dict[str, bool]:
    """Writes each file (text or bytes) whose content differs, atomically; {path: changed}.
    In check mode only compares."""
    written = {}
    for name, content in files.items():
        path = os.path.join(out_dir, name)
        data = content.encode("utf-8") if isinstance(content, str) else content
        try:
            with open(path, "rb") as handle:
                changed = handle.read() != data
        except OSError:
            changed = True
        if changed and not check_mode:
            replace_file(path, data)
        written[path] = changed
    return written


def report_result(
    out_dir: str,
    files: dict[str, bytes | str],
    json_name: str,
    report: dict,
    check_mode: bool = False,
    diff: bool = False,
) -> dict:
    """A report module's result: its files written (write_files), `changed` when any differed,
    and with `diff` the JSON report before and after."""
    json_path = os.path.join(out_dir, json_name)
    before_json = ""
    if diff and os.path.exists(json_path):
        with open(json_path, encoding="utf-8") as handle:
            before_json = handle.read()
    written = write_files(out_dir, files, check_mode=check_mode)
    result = {"changed": any(written.values()), "report": report, "paths": list(written)}
    if diff:
        result["diff"] = {"before": before_json, "after": files[json_name], "after_header": json_path}
    return result
