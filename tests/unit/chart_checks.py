"""Checks shared by the report tests: the chart files exist, are valid PNG and SVG, carry
the named series, and the Markdown embeds them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ansible_collections.mcfleet.fleet.plugins.module_utils.charts import PNG_MAGIC

SVG_NS = "{http://www.w3.org/2000/svg}"


def svg_ids_and_texts(svg: str) -> tuple[set[str], set[str]]:
    root = ET.fromstring(svg)
    assert root.tag == SVG_NS + "svg"
    ids = {element.get("id") for element in root.iter() if element.get("id")}
    texts = {"".join(element.itertext()).strip() for element in root.iter(SVG_NS + "text")}
    return ids, texts


def check_chart(files: dict, stem: str, markdown: str) -> tuple[set[str], set[str]]:
    """files: {name: content} as rendered, or a directory they were written to."""
    if isinstance(files, (str, Path)):
        folder = Path(files)
        png, svg = (folder / f"{stem}.png").read_bytes(), (folder / f"{stem}.svg").read_text()
    else:
        png, svg = files[f"{stem}.png"], files[f"{stem}.svg"]
    assert png.startswith(PNG_MAGIC) and len(png) > 1000
    assert f"]({stem}.png)" in markdown and f"]({stem}.svg)" in markdown
    return svg_ids_and_texts(svg)
