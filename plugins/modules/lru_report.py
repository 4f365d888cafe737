#!/usr/bin/python
"""Write the side-by-side LRU comparison report (JSON, Markdown, PNG and SVG chart)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lru_report
short_description: Write the side-by-side LRU comparison of two memcached servers
description:
  - Compares a baseline and a candidate memcached server that received the same traffic (a
    shadow copy), from two readings of M(mcfleet.fleet.memcached_stats) each, once both are
    warm and at the end - hit ratio, C(evictions), C(reclaimed), C(expired_unfetched),
    C(evicted_unfetched), C(evicted_active) over that window; per slab class, matched by chunk
    size and not by id, the age of the oldest item, evictions and memory at the end - with a
    one-line verdict.
  - Writes C(lru-<id>.json), C(.md), C(.png) and C(.svg) to O(report_dir); the chart is drawn
    with matplotlib (Agg backend) and embedded in the Markdown. Rewrites a file only when its
    content changes; check mode builds the report and writes nothing.
version_added: 0.3.0
author: mcfleet maintainers (@mcfleet)
requirements:
  - matplotlib (on the controller, where this module runs)
options:
  id:
    description: Names the report files (C(lru-<id>.*)); a plain file name.
    type: str
    required: true
  title:
    description: What is compared, for the headings.
    type: str
  baseline:
    description: The baseline side, C(name) and C(description) (release, settings).
    type: dict
    required: true
  candidate:
    description: The candidate side, C(name) and C(description).
    type: dict
    required: true
  warm:
    description: The M(mcfleet.fleet.memcached_stats) snapshots (by server name) read once both were warm.
    type: dict
    required: true
  end:
    description: The snapshots read at the end.
    type: dict
    required: true
  shadow:
    description: The topology model's C(shadow), recorded in the report.
    type: dict
  traffic:
    description: The load's summary, recorded in the report.
    type: dict
  report_dir:
    description: Where the report files go.
    type: path
    default: reports
attributes:
  check_mode:
    support: full
    description: Builds the report and writes nothing.
  diff_mode:
    support: none
    description: The report is new each run.
  platform:
    support: full
    platforms: posix
    description: The controller.
"""

EXAMPLES = r"""
- name: Write the LRU comparison
  mcfleet.fleet.lru_report:
    id: release-20261130T150000Z
    title: bookworm 1.6.18 against trixie 1.6.38
    baseline: {name: lru-baseline, description: "bookworm, -m 8 -f 1.25"}
    candidate: {name: lru-candidate, description: "trixie, -m 8 -f 1.25"}
    warm: "{{ lru_warm.snapshots }}"
    end: "{{ lru_end.snapshots }}"
    shadow: "{{ mcfleet.shadow }}"
    report_dir: reports
  delegate_to: localhost
"""

RETURN = r"""
report:
  description: The report (what C(lru-<id>.json) holds), with its one-line C(verdict).
  returned: always
  type: dict
paths:
  description: The files written (or that would be, in check mode).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.charts import fail_without_matplotlib, write_files
from ansible_collections.mcfleet.fleet.plugins.module_utils.lru_compare import (
    SIDES,
    CompareError,
    build_report,
    render_files,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "id": {"type": "str", "required": True},
            "title": {"type": "str"},
            "baseline": {"type": "dict", "required": True},
            "candidate": {"type": "dict", "required": True},
            "warm": {"type": "dict", "required": True},
            "end": {"type": "dict", "required": True},
            "shadow": {"type": "dict"},
            "traffic": {"type": "dict"},
            "report_dir": {"type": "path", "default": "reports"},
        },
        supports_check_mode=True,
    )
    fail_without_matplotlib(module)
    p = module.params
    if "/" in p["id"] or p["id"].startswith("."):
        module.fail_json(msg=f"id: {p['id']!r} is not a plain file name")
    snapshots = {}
    for side in SIDES:
        name = p[side].get("name")
        if not name:
            module.fail_json(msg=f"{side}.name: missing (the server's name in warm and end)")
        for reading in ("warm", "end"):
            if name not in p[reading]:
                module.fail_json(
                    msg=f"{reading}: no snapshot of {side} {name!r} (has {', '.join(p[reading])})"
                )
        snapshots[side] = {"warm": p["warm"][name], "end": p["end"][name]}
    comparison = {"id": p["id"], "title": p["title"], "shadow": p["shadow"], **{s: p[s] for s in SIDES}}
    try:
        report = build_report(comparison, snapshots, p["traffic"])
    except CompareError as error:
        module.fail_json(msg=str(error))
    written = write_files(p["report_dir"], render_files(report), check_mode=module.check_mode)
    module.exit_json(changed=any(written.values()), report=report, paths=list(written))


if __name__ == "__main__":
    main()
