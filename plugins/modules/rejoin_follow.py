#!/usr/bin/python
"""Delete on a returning shard each key its router journals, until the router re-admits it."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rejoin_follow
short_description: Follow a router's failover journal while it re-admits a shard
description:
  - Runs on a router host. With O(state=started), just before a shard's block lifts, it starts
    a follower in the background and returns at once. The follower reads the router's failover
    journal from O(offset) on, and deletes each key journalled there on the shard at
    O(address):O(port) as soon as the shard takes a connection from this host, until the
    router holds the shard healthy again (plus O(grace_s)) or O(max_s) passed. It writes what
    it did to RV(result_file).
  - With O(state=collected), waits up to O(wait_s) for that result, returns it and removes it.
  - A background process of its own, not Ansible's async, which Mitogen runs in a way that loses
    the result (and the stock connection costs seconds per router on every window).
  - Until the router re-admits the shard it sends the shard's writes to the gutter; this closes
    all but the last poll of that gap (see C(plugins/module_utils/rejoin.py)).
  - Reports the keys deleted, those the shard did not hold, and how long the router took to
    re-admit the shard.
version_added: 0.9.0
author: mcfleet maintainers (@mcfleet)
options:
  state:
    description: Start the follower, or collect its result.
    type: str
    choices: [started, collected]
    default: started
  result_file:
    description: With O(state=collected), RV(result_file) of the start.
    type: path
  wait_s:
    description: With O(state=collected), how long to wait for the follower to finish.
    type: float
    default: 60
  path:
    description: The router's failover journal.
    type: path
    default: /var/lib/mcfleet-router/failover.journal
  offset:
    description:
      - Where to start reading (RV(mcfleet.fleet.failover_journal#module:offset) of the pass
        before the unblock).
    type: int
    default: 0
  address:
    description: The returning shard's address (required to start).
    type: str
  port:
    description: The returning shard's port.
    type: int
    default: 11211
  shard:
    description: The shard's host name, as the router's health names its backends (required to start).
    type: str
  router:
    description:
      - How to read this router's health (C(engine), C(address), C(port)), as in
        M(mcfleet.fleet.router_health) (required to start).
    type: dict
  max_s:
    description: Stop after this long whatever happened (the caller deletes what is left).
    type: float
    default: 120
  grace_s:
    description: Keep following this long after the router re-admitted the shard.
    type: float
    default: 1.0
attributes:
  check_mode:
    support: none
    description: It follows a live re-admission; a dry run has none to follow.
  diff_mode:
    support: none
    description: Reports counts instead.
  platform:
    support: full
    platforms: posix
    description: The router host (its journal is local, its address is the one the block lifts for).
"""

EXAMPLES = r"""
- name: Follow every router's journal while it re-admits the shard
  mcfleet.fleet.rejoin_follow:
    offset: "{{ item.1.offset }}"
    address: "{{ shard_window.address }}"
    port: "{{ shard_window.port }}"
    shard: "{{ inventory_hostname }}"
    router: "{{ item.0 }}"
  loop: "{{ shard_window.routers | zip(journals.results) | list }}"
  delegate_to: "{{ item.0.host }}"
  register: followers

- name: Collect what each follower deleted
  mcfleet.fleet.rejoin_follow:
    state: collected
    result_file: "{{ item.1.result_file }}"
  loop: "{{ shard_window.routers | zip(followers.results) | list }}"
  delegate_to: "{{ item.0.host }}"
"""

RETURN = r"""
result_file:
  description: Where the follower writes its result (O(state=started)).
  returned: success
  type: str
deleted:
  description: Keys the shard held and deleted.
  returned: success
  type: int
absent:
  description: Keys the shard did not hold.
  returned: success
  type: int
offset:
  description: Where the journal was read up to.
  returned: success
  type: int
undeleted:
  description: Keys journalled but not deleted when O(max_s) ran out.
  returned: success
  type: list
  elements: str
readmitted_after_s:
  description: Seconds from the start until the router held the shard healthy (null if it never did).
  returned: success
  type: float
first_delete_after_s:
  description: Seconds from the start until the first delete reached the shard (null without any).
  returned: success
  type: float
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcached_health import HealthError, read_router
from ansible_collections.mcfleet.fleet.plugins.module_utils.rejoin import JournalError, follow
from ansible_collections.mcfleet.fleet.plugins.module_utils.render_memcached_proxy import JOURNAL_PATH
from ansible_collections.mcfleet.fleet.plugins.module_utils.safe_files import replace_file, safe_directory

RESULT_DIRECTORY = "/run/mcfleet-rejoin"


def start(module):
    params = module.params
    missing = [name for name in ("address", "shard", "router") if not params[name]]
    if missing:
        module.fail_json(msg=f"state=started needs {', '.join(missing)}")
    router = params["router"]
    backend = [{"host": params["shard"], "address": params["address"], "port": params["port"]}]
    directory = safe_directory(RESULT_DIRECTORY, mode=0o700)
    result_file = os.path.join(directory, f"{params['shard']}-{time.time_ns()}.json")

    def readmitted():
        try:
            health = read_router(router["engine"], router["address"], int(router["port"]), backend)
        except HealthError:
            return False
        return not [entry for entry in health["bad"] if entry.get("known")]

    if os.fork():
        module.exit_json(changed=False, result_file=result_file)
    # The follower: its own session, no inherited output, always ends with a result.
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):
        os.dup2(devnull, descriptor)
    try:
        result = follow(
            params["path"],
            params["offset"],
            params["address"],
            params["port"],
            readmitted,
            params["max_s"],
            grace_s=params["grace_s"],
        )
    except (JournalError, OSError) as error:
        result = {"failed": True, "msg": f"path={params['path']}: {error}"}
    try:
        replace_file(result_file, json.dumps(result), mode=0o600, directory_mode=0o700)
    finally:
        os._exit(0)


def collect(module):
    result_file = module.params["result_file"]
    if not result_file:
        module.fail_json(msg="state=collected needs result_file")
    deadline = time.monotonic() + module.params["wait_s"]
    while not os.path.exists(result_file):
        if time.monotonic() >= deadline:
            module.fail_json(
                msg=f"result_file={result_file}: the follower did not finish in {module.params['wait_s']} s"
            )
        time.sleep(0.1)
    with open(result_file, encoding="utf-8") as stream:
        result = json.load(stream)
    os.unlink(result_file)
    if result.get("failed"):
        module.fail_json(msg=result.get("msg", "the follower failed"))
    module.exit_json(changed=result["deleted"] > 0, **result)


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["started", "collected"], "default": "started"},
            "result_file": {"type": "path"},
            "wait_s": {"type": "float", "default": 60},
            "path": {"type": "path", "default": JOURNAL_PATH},
            "offset": {"type": "int", "default": 0},
            "address": {"type": "str"},
            "port": {"type": "int", "default": 11211},
            "shard": {"type": "str"},
            "router": {"type": "dict"},
            "max_s": {"type": "float", "default": 120},
            "grace_s": {"type": "float", "default": 1.0},
        },
        supports_check_mode=False,
    )
    if module.params["state"] == "started":
        start(module)
    collect(module)


if __name__ == "__main__":
    main()
