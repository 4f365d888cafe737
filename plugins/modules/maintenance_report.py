#!/usr/bin/python
"""Write the rolling maintenance's report from its progress log and traffic timeline."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: maintenance_report
short_description: Write the report of a rolling maintenance (JSON, Markdown, PNG and SVG chart)
description:
  - Reads the progress log written by M(mcfleet.fleet.maintenance_step) and the client traffic
    timeline written by M(mcfleet.fleet.traffic), and writes C(<id>.json), C(<id>.md),
    C(<id>.png) and C(<id>.svg) to O(report_dir). Per host - the time of each step, how long it was out of
    service, the client errors while it was out, its hit ratio before and after - and in total.
  - The chart (client errors/s, each host's time out of service) is drawn with matplotlib
    (Agg backend); the Markdown embeds it.
  - Runs where the files are (the controller). Rewrites a file only when its content changes.
version_added: 0.2.0
requirements:
  - matplotlib (on the controller, where this module runs)
author: mcfleet maintainers (@mcfleet)
options:
  progress_log:
    description: The run's progress log (JSON lines).
    type: path
    required: true
  timeline:
    description: The client traffic's timeline (JSON lines); none when no traffic ran.
    type: path
  report_dir:
    description: Where the report files go.
    type: path
    required: true
  status:
    description: C(finished) after the last host, C(stopped) when a host failed.
    type: str
    choices: [finished, stopped]
    default: finished
  model:
    description:
      - The topology model. With O(router_host), each traffic key is placed on its server, and the
        report shows the client's hit ratio on each server's keys before its block, right after
        its unblock, and the seconds until it was back to 90% of before.
    type: dict
  router_host:
    description: The router the client traffic went through (the model's name for it).
    type: str
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
- name: Write the report
  mcfleet.fleet.maintenance_report:
    progress_log: reports/maintenance-codfw-upgrade/progress.jsonl
    timeline: reports/maintenance-codfw-upgrade/traffic-codfw-upgrade-20261130T120000Z.jsonl
    report_dir: reports
  delegate_to: localhost
"""

RETURN = r"""
report:
  description: The report (what C(<id>.json) holds).
  returned: always
  type: dict
paths:
  description: The files written (or that would be, in check mode).
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.charts import fail_without_matplotlib, write_files
from ansible_collections.mcfleet.fleet.plugins.module_utils.maintenance_progress import load
from ansible_collections.mcfleet.fleet.plugins.module_utils.maintenance_report import (
    build_report,
    key_hosts,
    render_files,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.route_explain import ExplainError
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import load_timeline


def main():
    module = AnsibleModule(
        argument_spec={
            "progress_log": {"type": "path", "required": True},
            "timeline": {"type": "path"},
            "report_dir": {"type": "path", "required": True},
            "status": {"type": "str", "choices": ["finished", "stopped"], "default": "finished"},
            "model": {"type": "dict"},
            "router_host": {"type": "str"},
        },
        supports_check_mode=True,
    )
    fail_without_matplotlib(module)
    params = module.params
    entries = load(params["progress_log"])
    if not entries:
        module.fail_json(msg=f"progress_log={params['progress_log']}: no progress recorded there")
    timeline = params["timeline"] if params["timeline"] and os.path.exists(params["timeline"]) else None
    keys = None
    if timeline and params["model"] and params["router_host"]:
        plan = (load_timeline(timeline)["start"] or {}).get("plan")
        try:
            keys = key_hosts(params["model"], params["router_host"], plan) if plan else None
        except (ExplainError, KeyError) as error:
            module.warn(f"router_host={params['router_host']}: the client's keys cannot be placed ({error})")
    report = build_report(entries, timeline, params["status"], keys)
    stem = f"maintenance-{report['id'] or 'run'}"
    files = render_files(report, entries, timeline, stem, keys)
    written = write_files(params["report_dir"], files, check_mode=module.check_mode)
    module.exit_json(changed=any(written.values()), report=report, paths=list(written))


if __name__ == "__main__":
    main()
