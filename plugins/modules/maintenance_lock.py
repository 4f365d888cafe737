#!/usr/bin/python
"""Hold the one maintenance or drill lock of a datacentre, as a JSON file on a datacentre host."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: maintenance_lock
short_description: Let one maintenance or drill run at a time work on a datacentre
description:
  - Takes, renews, breaks or releases a lock held as a JSON file (O(path)) on one host of the
    datacentre. Every controller that runs against that host sees the same lock, so two
    controllers cannot run a maintenance or a drill in the same datacentre at once.
  - The record names the run (O(id)), its O(kind) and O(datacentre), who holds it
    (O(controller), O(user)), the O(reason), when it started, was last renewed and when it expires.
  - O(state=present) takes the lock when there is none or it has expired, and renews it (a new
    expiry, the same start) when O(id) already holds it. A lock held by another run that has not
    expired is refused, naming that run, unless O(break_reason) is set, in which case it is taken
    over and the broken lock is kept in the new record's C(broken) field with the reason.
  - A lock file that holds no valid record (a torn or hand-edited file) counts as an expired lock.
    O(state=present) replaces it and warns; O(state=absent) leaves it in place.
  - O(state=absent) removes the lock only when O(id) holds it; another run's lock is refused, and
    no lock at all is no change.
  - Reading, deciding and writing run under an exclusive C(flock) on a sibling file
    C(<path>.guard), so of two controllers racing on the same host exactly one wins. The record
    is written to a temporary file in the same directory and renamed over the lock, so a reader
    sees the old record or the new one, never half of one.
version_added: 0.2.0
author: mcfleet maintainers (@mcfleet)
options:
  path:
    description:
      - Absolute path of the lock file on the host. Its directory is created with mode 0700 if
        missing; the file is written with mode 0600.
    type: str
    default: /var/lib/mcfleet/maintenance.lock
  state:
    description: V(present) takes or renews the lock, V(absent) releases it.
    type: str
    choices: [present, absent]
    default: present
  id:
    description:
      - The run's id, unique per run and the same for every call of that run
        (letters, digits, dots, underscores, colons and hyphens).
    type: str
    required: true
  datacentre:
    description: The datacentre the run works on, recorded for whoever finds the lock held.
    type: str
  kind:
    description: What the run is, e.g. V(maintenance restart) or V(drill), recorded likewise.
    type: str
  reason:
    description: Why the run is made, recorded likewise.
    type: str
  controller:
    description: The controller's hostname, recorded as the holder.
    type: str
  user:
    description: The user who started the run on the controller, recorded as the holder.
    type: str
  ttl_s:
    description:
      - Seconds until the lock expires unless renewed; required with O(state=present), from 1
        to 86400. A controller that dies blocks the datacentre for at most this long.
    type: int
  break_reason:
    description:
      - Take over a lock that another run holds and that has not expired, recording this reason
        and the broken lock in the new record. Only for a run known to be dead.
      - Empty (or only blanks) never breaks a lock.
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    description: Reads the lock and reports what it would do (and the record it would write); writes nothing.
  diff_mode:
    support: full
    description: The lock record before and after, as JSON text (empty when there is none).
  platform:
    support: full
    platforms: posix
    description: Linux hosts (the guard needs C(flock) on a local file system).
notes:
  - Pass the same O(id) for every call of one run (take, renew, release), and release the lock
    in an C(always) section so a failed run does not hold it until it expires.
  - A refusal fails the task with the holder in C(msg) and RV(holder).
"""

EXAMPLES = r"""
- name: Take the datacentre's maintenance lock for this run
  mcfleet.fleet.maintenance_lock:
    id: "{{ run_id }}"
    datacentre: eqiad
    kind: maintenance restart
    reason: memcached 1.6.21 upgrade
    controller: "{{ lookup('ansible.builtin.pipe', 'hostname -f') }}"
    user: "{{ lookup('ansible.builtin.env', 'USER') }}"
    ttl_s: 3600
  delegate_to: "{{ groups['eqiad'] | first }}"
  run_once: true

- name: Take over the lock of a run whose controller died
  mcfleet.fleet.maintenance_lock:
    id: "{{ run_id }}"
    datacentre: eqiad
    kind: drill
    ttl_s: 1800
    break_reason: "controller ctl1001 lost power mid-drill (INC-4211)"
  delegate_to: "{{ groups['eqiad'] | first }}"
  run_once: true

- name: Release it at the end of the run, failed or not
  mcfleet.fleet.maintenance_lock:
    id: "{{ run_id }}"
    state: absent
  delegate_to: "{{ groups['eqiad'] | first }}"
  run_once: true
"""

RETURN = r"""
action:
  description:
    - V(acquired) (there was no lock, or it had expired or was unreadable), V(refreshed) (this
      run already held it; the expiry moved on), V(broken) (another run's lock was taken over),
      V(released), V(absent) (this run held no lock; nothing removed) or V(refused).
    - In check mode, what would have been done.
  returned: always
  type: str
  sample: acquired
lock:
  description:
    - The lock record on the host after the call (in check mode, the one that would be), null
      when none is held. After a refusal, the other run's record.
  returned: always
  type: dict
  contains:
    id:
      description: The run holding the lock.
      type: str
    datacentre:
      description: The datacentre the run works on.
      type: str
    kind:
      description: What the run is.
      type: str
    holder:
      description: C(controller) (hostname) and C(user) of the run.
      type: dict
    reason:
      description: Why the run is made.
      type: str
    started_at:
      description: Unix time the run took the lock; a refresh keeps it.
      type: float
    refreshed_at:
      description: Unix time of the last take or renewal.
      type: float
    expires_at:
      description: Unix time after which any run may take the lock.
      type: float
    broken:
      description:
        - Null, or the lock this run broke, as C(lock) (that record, less its own C(broken) note),
          C(reason) and C(broken_at) (Unix time).
      type: dict
  sample:
    id: eqiad-restart-20250101T120000Z
    datacentre: eqiad
    kind: maintenance restart
    holder: {controller: ctl1001.example.org, user: alice}
    reason: memcached 1.6.21 upgrade
    started_at: 1735732800.0
    refreshed_at: 1735732800.0
    expires_at: 1735736400.0
    broken: null
holder:
  description:
    - The record found on the host before the call, null when there was none. After a refusal,
      the run that holds the lock; after V(broken), the run whose lock was broken.
    - A file that held no valid record shows as C(unreadable=true) with C(path) and C(error).
  returned: always
  type: dict
  sample:
    id: eqiad-drill-20250101T110000Z
    datacentre: eqiad
    kind: drill
    holder: {controller: ctl2001.example.org, user: bob}
    reason: quarterly failover drill
    started_at: 1735729200.0
    refreshed_at: 1735729200.0
    expires_at: 1735734600.0
    broken: null
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.maintenance_lock import (
    DEFAULT_PATH,
    MaintenanceLockError,
    acquire_lock,
    release_lock,
    validate_request,
)

ARGUMENT_SPEC = {
    "path": {"type": "str", "default": DEFAULT_PATH},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "id": {"type": "str", "required": True},
    "datacentre": {"type": "str"},
    "kind": {"type": "str"},
    "reason": {"type": "str"},
    "controller": {"type": "str"},
    "user": {"type": "str"},
    "ttl_s": {"type": "int"},
    "break_reason": {"type": "str", "default": ""},
}


def record_text(record):
    return json.dumps(record, indent=2, sort_keys=True) + "\n" if record else ""


def run(module):
    params = module.params
    if params["state"] == "absent":
        return release_lock(params["path"], params["id"], check_mode=module.check_mode)
    request = validate_request(
        params["id"],
        params["ttl_s"],
        datacentre=params["datacentre"],
        kind=params["kind"],
        reason=params["reason"],
        controller=params["controller"],
        user=params["user"],
        break_reason=params["break_reason"],
    )
    return acquire_lock(params["path"], request, check_mode=module.check_mode)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("state", "present", ["ttl_s"])],
        supports_check_mode=True,
    )
    try:
        outcome = run(module)
    except (MaintenanceLockError, OSError) as error:
        module.fail_json(msg=str(error))
    result = {
        "changed": outcome.changed,
        "action": outcome.action,
        "lock": outcome.after,
        "holder": outcome.before,
    }
    if module._diff:
        result["diff"] = {
            "before_header": module.params["path"],
            "after_header": module.params["path"],
            "before": record_text(outcome.before),
            # Unchanged means the file stays as it was, even one that holds no lock.
            "after": record_text(outcome.after if outcome.changed else outcome.before),
        }
    if outcome.failed:
        module.fail_json(msg=outcome.message, **result)
    # Taking over an expired, unreadable or broken lock means a run ended badly: say so.
    if outcome.message:
        module.warn(outcome.message)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
