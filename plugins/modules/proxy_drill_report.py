#!/usr/bin/python
"""Ansible module: write the JSON, Markdown and chart (PNG, SVG) report of one proxy drill."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: proxy_drill_report
short_description: Write a cross-datacentre proxy drill's report (JSON, Markdown, PNG and SVG chart)
description:
  - Takes the results of M(mcfleet.fleet.replication_check) before and during the block, reads
    the two traffic timelines written by M(mcfleet.fleet.traffic) (the writer's local traffic
    before the block and with it in place), and writes C(<report_dir>/proxy-<drill_id>.json),
    C(.md), C(.png) and C(.svg).
  - The JSON carries the drill (datacentre, kind, blocked proxies, the sources they were blocked
    for, the writer), the replication figures of both phases, C(replicated_writes_lost) (sets
    and deletes lost during the block), the local traffic of both phases (requests, client
    errors, latency p50, p99 and max, and C(steady_p99_ms), the median of the per-second p99s),
    and the verdict, C(ok) and C(violations).
  - With one proxy blocked, nothing may be lost during the block (sets, deletes, writes missing
    locally). With every proxy blocked, the writer's local traffic must see no client errors and
    no steady p99 on the scale of a wait on the blocked datacentre (see
    O(drill.cross_region_timeout_ms)). Either way the before phase must have
    lost nothing. A missing phase or figure is a violation.
  - The chart (PNG, and SVG with its text kept as text) shows local client errors/s and p50/p99
    latency per second, the baseline then the block, with the block marked; the Markdown embeds
    it. It is drawn with matplotlib (Agg backend) on the controller.
  - Runs on the controller. C(changed) only when a file's content differs; check mode
    builds the report and writes nothing.
version_added: "0.3.0"
requirements:
  - matplotlib (on the controller, where this module runs)
author: mcfleet maintainers (@mcfleet)
options:
  drill_id:
    description: Names the report files, C(proxy-<drill_id>.*).
    type: str
    required: true
  drill:
    description: What was drilled, copied into the report.
    type: dict
    required: true
    suboptions:
      datacentre:
        description: The datacentre whose proxies were blocked.
        type: str
        required: true
      kind:
        description: Whether one proxy or every proxy of the datacentre was blocked; decides the verdict.
        type: str
        required: true
        choices: ["one proxy", "every proxy"]
      blocked:
        description: The proxy hosts blocked.
        type: list
        elements: str
        required: true
      blocked_for:
        description: The source addresses the block applied to.
        type: list
        elements: str
        required: true
      writer:
        description: The router of another datacentre whose replicated writes and local traffic were measured.
        type: str
        required: true
      port:
        description: The proxies' cross-datacentre port that was blocked.
        type: int
        required: true
      cross_region_timeout_ms:
        description:
          - The routers' timeout for a remote datacentre (the topology model's
            C(tko.cross_region_timeout_ms)). A local request that waits on the blocked
            datacentre waits this long, so with every proxy blocked the steady p99 fails
            above half of it, or above twice the baseline plus 1 ms where that is higher.
        type: float
        required: true
  replication:
    description:
      - Results of M(mcfleet.fleet.replication_check), keyed C(before) and C(during). Of each,
        C(attempted), C(acknowledged), C(set_arrived), C(set_lost), C(delete_arrived),
        C(delete_lost), C(local_missing), C(wrong_shard), C(set_delay_ms), C(delete_delay_ms)
        and C(errors) are reported.
    type: dict
    required: true
    suboptions:
      before:
        description: The result before the block; missing, failed or skipped is a violation.
        type: dict
      during:
        description: The result with the block in place; missing, failed or skipped is a violation.
        type: dict
  timelines:
    description: The writer's local traffic timelines (JSONL) on the controller.
    type: dict
    required: true
    suboptions:
      baseline:
        description: Traffic before the block.
        type: path
        required: true
      during:
        description: Traffic with the block in place.
        type: path
        required: true
  report_dir:
    description: Directory of the reports.
    type: path
    default: reports
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Returns details on what has changed (or would change in check mode).
    support: full
"""

EXAMPLES = r"""
- name: Write the proxy drill report
  mcfleet.fleet.proxy_drill_report:
    drill_id: "{{ drill_id }}"
    drill:
      datacentre: codfw
      kind: one proxy
      blocked: [mwproxy2001]
      blocked_for: [10.89.213.15, 10.89.213.16]
      writer: mw1001
      port: 11214
      cross_region_timeout_ms: 250
    replication:
      before: "{{ replication_before }}"
      during: "{{ replication_during }}"
    timelines:
      baseline: "{{ drill_dir }}/traffic-baseline.jsonl"
      during: "{{ drill_dir }}/traffic-during.jsonl"
    report_dir: "{{ playbook_dir }}/../reports"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
report:
  description: The report as written to the JSON file.
  returned: always
  type: dict
  contains:
    ok:
      description: Whether the drill passed.
      type: bool
    violations:
      description: Each failed condition, naming the figure and its value.
      type: list
      elements: str
    replicated_writes_lost:
      description: Sets and deletes lost during the block (null when the during phase lacks them).
      type: int
    local_traffic:
      description:
        - Per phase (C(baseline), C(during)), C(requests), C(client_errors),
          C(latency_ms) (C(p50), C(p99), C(max)) and C(steady_p99_ms).
      type: dict
    replication_before:
      description: The reported figures of the before phase (null when it is missing).
      type: dict
    replication_during:
      description: The reported figures of the during phase (null when it is missing).
      type: dict
paths:
  description: Paths of the JSON, Markdown, PNG and SVG files.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.charts import (
    fail_without_matplotlib,
    report_result,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.proxy_drill_report import (
    KINDS,
    build_report,
    render_files,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "drill_id": {"type": "str", "required": True},
            "drill": {
                "type": "dict",
                "required": True,
                "options": {
                    "datacentre": {"type": "str", "required": True},
                    "kind": {"type": "str", "required": True, "choices": list(KINDS)},
                    "blocked": {"type": "list", "elements": "str", "required": True},
                    "blocked_for": {"type": "list", "elements": "str", "required": True},
                    "writer": {"type": "str", "required": True},
                    "port": {"type": "int", "required": True},
                    "cross_region_timeout_ms": {"type": "float", "required": True},
                },
            },
            "replication": {
                "type": "dict",
                "required": True,
                "options": {"before": {"type": "dict"}, "during": {"type": "dict"}},
            },
            "timelines": {
                "type": "dict",
                "required": True,
                "options": {
                    "baseline": {"type": "path", "required": True},
                    "during": {"type": "path", "required": True},
                },
            },
            "report_dir": {"type": "path", "default": "reports"},
        },
        supports_check_mode=True,
    )
    fail_without_matplotlib(module)
    p = module.params
    if "/" in p["drill_id"] or p["drill_id"].startswith("."):
        module.fail_json(msg=f"drill_id must be a plain file name, got {p['drill_id']!r}")
    for phase, path in p["timelines"].items():
        if not os.path.exists(path):
            module.fail_json(msg=f"timelines.{phase}: {path} does not exist")
    report, rows = build_report({**p["drill"], "drill_id": p["drill_id"]}, p["replication"], p["timelines"])
    files = render_files(report, rows)
    result = report_result(
        p["report_dir"], files, f"proxy-{p['drill_id']}.json", report, module.check_mode, module._diff
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
