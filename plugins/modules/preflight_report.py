#!/usr/bin/python
"""Documentation of the preflight_report action plugin (plugins/action/preflight_report.py does the work)."""

DOCUMENTATION = r"""
---
module: preflight_report
short_description: Decide preflight's checks from what was read on every host, print-ready and as JSON
description:
  - Runs once, on the controller, at the end of C(playbooks/preflight.yml); contacts no host.
  - Reads, from each host of O(hosts), the result of M(mcfleet.fleet.preflight_probe) the preflight
    play registered there as C(__preflight_probe) (a host without one is reported as not probed).
  - Decides, per host, C(reachable), C(release) (against C(mcfleet_release) in the model),
    C(clock) (the host's clock within one second of the controller's, allowing for the round trip),
    C(memcached), C(settings) (drift from the inventory), C(restart_pending), C(router_config)
    (the deployed file's SHA-1 against the model's rendering), C(router_backends) and C(netfilter);
    per datacentre, C(gutter_capacity) (free gutter memory against the bytes of the O(batch_size)
    largest main shards). Each check is C(ok), C(warn) or C(FAIL).
  - Writes the JSON report to O(report_dir)C(/preflight-<scope>-<UTC timestamp>.json), where the scope
    is C(all), a datacentre or datacentres joined by C(+). It does so in check mode too, as the report is
    the run's output and changes no host.
  - Does not fail on failed checks; the playbook does, listing RV(failed_checks).
version_added: 0.2.0
author: mcfleet maintainers (@mcfleet)
options:
  model:
    description: The topology model (the C(mcfleet) fact set by C(playbooks/topology.yml)).
    type: dict
    required: true
  hosts:
    description: The hosts that were read (the play's hosts, C(ansible_play_hosts_all)).
    type: list
    elements: str
    required: true
  batch_size:
    description: How many main shards of a datacentre a maintenance batch takes out at once.
    type: int
    default: 1
  target_release:
    description:
      - During a rolling upgrade, the release the hosts are being moved to. A host that runs it
        passes the release check although the inventory still names the old one.
    type: str
  in_maintenance:
    description:
      - Hosts an interrupted maintenance run left part way; a resumed run finishes them. Failures
        that concern only them (memcached down, held as bad by the routers) become warnings.
    type: list
    elements: str
    default: []
  report_dir:
    description: Directory the JSON report is written to (created if missing).
    type: path
    required: true
attributes:
  check_mode:
    support: full
    description: Reads what was registered; the JSON report is written in check mode too.
  diff_mode:
    support: none
    description: Changes no host.
  platform:
    support: full
    platforms: all
    description: Runs on the controller.
"""

EXAMPLES = r"""
- name: Decide the checks, write the JSON report
  mcfleet.fleet.preflight_report:
    model: "{{ mcfleet }}"
    hosts: "{{ ansible_play_hosts_all }}"
    batch_size: 1
    report_dir: "{{ playbook_dir | dirname }}/reports"
  run_once: true
  register: preflight
"""

RETURN = r"""
ok:
  description: No check failed.
  returned: success
  type: bool
summary:
  description: How many checks are ok, warn and FAIL.
  returned: success
  type: dict
  sample: {ok: 80, warn: 0, FAIL: 1}
failed_checks:
  description: "One line per failed check: C(<check> <host>: <detail>)."
  returned: success
  type: list
  elements: str
checks:
  description: Every check, in host order.
  returned: success
  type: list
  elements: dict
  contains:
    check:
      description: The check's name.
      type: str
    host:
      description: The host (a datacentre for gutter_capacity, C(all) for topology).
      type: str
    status:
      description: C(ok), C(warn) or C(FAIL).
      type: str
    detail:
      description: What was found; for drift, the setting, expected and actual value.
      type: str
    data:
      description: The figures behind the check, where there are some.
      type: dict
table:
  description: The checks as aligned text lines (CHECK, HOST, STATUS, DETAIL).
  returned: success
  type: list
  elements: str
path:
  description: The JSON report written.
  returned: success
  type: str
"""
