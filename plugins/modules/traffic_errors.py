#!/usr/bin/python
"""Ansible module: requests and client errors in a traffic timeline, read where it is written."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: traffic_errors
short_description: Count the requests and client errors in a traffic timeline
description:
  - Reads the JSON-lines timeline written by M(mcfleet.fleet.traffic) on the host it runs on,
    and counts the requests, and the client errors (errors and timeouts), between two times.
  - Run it where the traffic runs (the controller in the lab, the app server elsewhere). The
    timeline of a long run is large, so it is read in place rather than copied at every gate.
  - Read-only; never reports C(changed). Check mode reads the same way.
version_added: "0.3.0"
author: mcfleet maintainers (@mcfleet)
options:
  timeline:
    description: The timeline file.
    type: path
    required: true
  start:
    description: Count requests at or after this time (seconds since the epoch); all when unset.
    type: float
  end:
    description: Count requests before this time (seconds since the epoch); all when unset.
    type: float
  since_s:
    description:
      - Count the requests of the last O(since_s) seconds before now on the host that runs it.
      - Overrides O(start). The client's own clock decides, so the controller's clock does not matter.
    type: float
attributes:
  check_mode:
    support: full
    description: Reads only; the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing.
"""

EXAMPLES = r"""
- name: Wait until the clients see no error in the last 2 s
  mcfleet.fleet.traffic_errors:
    timeline: /var/tmp/mcfleet/maintenance-codfw-restart/traffic.jsonl
    since_s: 2
  register: recent
  until: recent.errors == 0
  retries: 60
  delay: 1
"""

RETURN = r"""
requests:
  description: Requests in the window.
  type: int
  returned: success
errors:
  description: Requests in the window that ended in an error or a timeout.
  type: int
  returned: success
error_rate:
  description: errors / requests (0.0 when there were no requests).
  type: float
  returned: success
stale_reads:
  description: Gets in the window that read a value older than the client's last acknowledged set.
  type: int
  returned: success
resurrected_reads:
  description: Gets in the window that read a value the client had deleted.
  type: int
  returned: success
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import client_errors


def main():
    module = AnsibleModule(
        argument_spec={
            "timeline": {"type": "path", "required": True},
            "start": {"type": "float"},
            "end": {"type": "float"},
            "since_s": {"type": "float"},
        },
        supports_check_mode=True,
    )
    params = module.params
    start = time.time() - params["since_s"] if params["since_s"] is not None else params["start"]
    try:
        counted = client_errors(params["timeline"], start, params["end"])
    except OSError as error:
        module.fail_json(msg=f"timeline={params['timeline']}: cannot read the traffic timeline: {error}")
    module.exit_json(changed=False, **counted)


if __name__ == "__main__":
    main()
