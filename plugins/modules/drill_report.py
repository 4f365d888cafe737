#!/usr/bin/python
"""Ansible module: write the JSON, Markdown and chart (PNG, SVG) report of one failover drill."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: drill_report
short_description: Write a failover drill's report (JSON, Markdown, PNG and SVG timeline)
description:
  - Reads the traffic timeline written by M(mcfleet.fleet.traffic), takes the results of the three
    M(mcfleet.fleet.failover_verify) phases, the block and unblock times and the number of drill
    rules left on the shard, and writes C(<report_dir>/<drill_id>.json), C(.md), C(.png) and C(.svg).
  - The JSON carries C(time_to_failover_s), C(client_errors), C(requests), C(latency_ms)
    (p50, p99, max before, during and after the block), C(lost), C(stale_after_rejoin),
    C(gutter_hit_ratio) and C(rules_left), with the drill's mode, policy, shard and times.
  - The chart (PNG, and SVG with its text kept as text) shows client errors/s, p50/p99 latency
    and gutter hits/s per second, with the block, unblock and re-admission marked; the Markdown
    embeds it. It is drawn with matplotlib (Agg backend) on the controller.
  - Runs on the controller. C(changed) only when a file's content differs; check mode
    builds the report and writes nothing.
version_added: "0.1.0"
requirements:
  - matplotlib (on the controller, where this module runs)
author: mcfleet maintainers (@mcfleet)
options:
  drill_id:
    description: Names the report files.
    type: str
    required: true
  drill:
    description: What was drilled, copied into the report (datacentre, shard, mode, rejoin_policy, router).
    type: dict
    required: true
  timeline:
    description: The traffic timeline (JSONL) on the controller.
    type: path
    required: true
  verify:
    description: Results of the verifier's phases, keyed C(before), C(during), C(after).
    type: dict
    required: true
  events:
    description: Unix times C(blocked_at) and C(unblocked_at), optionally C(started_at), C(finished_at).
    type: dict
    required: true
  rules_left:
    description: Drill rules still present on the shard after the drill (must be 0).
    type: int
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
- name: Write the drill report
  mcfleet.fleet.drill_report:
    drill_id: "{{ drill_id }}"
    drill:
      datacentre: eqiad
      shard: "{{ drill_shard }}"
      mode: "{{ drill_mode }}"
      rejoin_policy: "{{ rejoin_policy }}"
      router: 10.89.213.15:11213
    timeline: "{{ drill_dir }}/traffic.jsonl"
    verify:
      before: "{{ verify_before }}"
      during: "{{ verify_during }}"
      after: "{{ verify_after }}"
    events:
      blocked_at: "{{ blocked_at }}"
      unblocked_at: "{{ unblocked_at }}"
    rules_left: "{{ block_absent.rules | length }}"
    report_dir: "{{ playbook_dir }}/../reports"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
report:
  description: The report as written to the JSON file.
  returned: always
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
from ansible_collections.mcfleet.fleet.plugins.module_utils.drill_report import build_report, render_files


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "drill_id": {"type": "str", "required": True},
            "drill": {"type": "dict", "required": True},
            "timeline": {"type": "path", "required": True},
            "verify": {"type": "dict", "required": True},
            "events": {"type": "dict", "required": True},
            "rules_left": {"type": "int", "required": True},
            "report_dir": {"type": "path", "default": "reports"},
        },
        supports_check_mode=True,
    )
    fail_without_matplotlib(module)
    p = module.params
    if "/" in p["drill_id"] or p["drill_id"].startswith("."):
        module.fail_json(msg=f"drill_id must be a plain file name, got {p['drill_id']!r}")
    if not os.path.exists(p["timeline"]):
        module.fail_json(msg=f"timeline {p['timeline']} does not exist")
    events = {k: float(v) for k, v in p["events"].items() if v not in (None, "")}
    report, rows = build_report(
        {**p["drill"], "drill_id": p["drill_id"]}, p["timeline"], p["verify"], events, p["rules_left"]
    )
    files = render_files(report, rows)
    result = report_result(
        p["report_dir"], files, p["drill_id"] + ".json", report, module.check_mode, module._diff
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
