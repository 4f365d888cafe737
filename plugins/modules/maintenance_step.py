#!/usr/bin/python
"""Documentation of the maintenance_step action plugin (plugins/action/maintenance_step.py)."""

DOCUMENTATION = r"""
---
module: maintenance_step
short_description: Record a step of the rolling maintenance and show it as one progress line
description:
  - Appends one JSON line (time, host, step, detail, optional data) to the run's progress log on
    the controller, and returns a one-line summary with the time since the run began and, once a
    first host is done, an estimated finish from the mean time per host.
  - The report of playbooks/rolling_maintenance.yml is built from this log; an interrupted run
    leaves it behind as a record of how far it got.
  - Runs on the controller only. In check mode nothing is written.
version_added: 0.2.0
author: mcfleet maintainers (@mcfleet)
options:
  log:
    description: Path of the progress log (JSON lines) on the controller.
    type: path
    required: true
  host:
    description: The host the step belongs to; the task's host by default.
    type: str
  step:
    description: The step (the per-host steps in order, or plan, skip, failed, finished).
    type: str
    required: true
    choices: [preflight, canaries, block, failover, stop, act, configure, start, health, invalidate, unblock,
              routers, catch_up, warmup, done, plan, skip, failed, finished]
  detail:
    description: A short text for the operator.
    type: str
    default: ""
  remaining_hosts:
    description: Hosts still to do after this one, for the estimated finish.
    type: int
    default: -1
  data:
    description: Figures kept in the log for the report (e.g. hit ratio, errors).
    type: dict
attributes:
  check_mode:
    support: full
    description: Nothing is written in check mode.
  diff_mode:
    support: none
    description: Nothing to diff.
  platform:
    support: full
    platforms: all
    description: Runs on the controller.
"""

EXAMPLES = r"""
- name: Record that the shard is blocked
  mcfleet.fleet.maintenance_step:
    log: "{{ maintenance_dir }}/progress.jsonl"
    step: block
    detail: reject for the routers and proxies, rollback in 900 s
"""

RETURN = r"""
msg:
  description: The progress line, e.g. C(+42.0s mc2001 [3/13 block] ... (ETA 12:45:10Z, 61s per host)).
  returned: always
  type: str
entry:
  description: The JSON object appended to the log.
  returned: always
  type: dict
"""
