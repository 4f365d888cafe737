#!/usr/bin/python
"""Read or empty a router's failover journal (routes.lua's route_mcfleet_journal)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: failover_journal
short_description: Read or empty a router's failover journal
description:
  - The memcached proxy router journals every request that may change a key and that it sends
    to the gutter because the key's shard failed (C(route_mcfleet_journal) in the memcached_proxy
    role's C(routes.lua)). A shard that returns holding data deletes those keys before it
    rejoins (M(mcfleet.fleet.shard_invalidate)), so it serves nothing staler than the gutter did.
  - With O(state=read), returns the distinct keys journalled from byte O(offset) on, at or after
    O(since), and the offset the next read starts from. Reads only.
  - With O(state=empty), empties the journal before a window, so it holds that window's keys
    only. The proxy keeps appending to it.
  - The journal is opened without following symbolic links.
version_added: 0.9.0
author: mcfleet maintainers (@mcfleet)
options:
  path:
    description: The journal, as rendered into the router's config.
    type: path
    default: /var/lib/mcfleet-router/failover.journal
  state:
    description: Read the journal's keys, or empty it.
    type: str
    choices: [read, empty]
    default: read
  since:
    description: With O(state=read), only records at or after this Unix time (whole seconds).
    type: float
    default: 0
  offset:
    description:
      - With O(state=read), the byte to start at (RV(offset) of an earlier read). A journal
        shorter than that was emptied since, and is read from its start.
    type: int
    default: 0
  key_limit:
    description:
      - At most this many distinct keys are returned; RV(truncated) says there were more, and the
        caller empties the shard instead of deleting them one by one.
    type: int
    default: 200000
attributes:
  check_mode:
    support: full
    description: O(state=empty) reports what it would empty and changes nothing.
  diff_mode:
    support: full
    description: O(state=empty) shows the journal's size before and after.
  platform:
    support: full
    platforms: posix
    description: The router host.
"""

EXAMPLES = r"""
- name: Read the keys journalled since the block, on every router
  mcfleet.fleet.failover_journal:
    since: "{{ block_applied_at }}"
  delegate_to: "{{ item.host }}"
  loop: "{{ shard_window.routers }}"
  register: journals
"""

RETURN = r"""
keys:
  description: The distinct keys journalled (O(state=read)), in the order first journalled.
  returned: success
  type: list
  elements: str
records:
  description: Journal lines counted (at or after O(since)).
  returned: success
  type: int
offset:
  description: Where the next read starts (after the last whole line read).
  returned: success
  type: int
exists:
  description: Whether the journal exists (a router that never failed over has none).
  returned: success
  type: bool
truncated:
  description: More distinct keys than O(key_limit) were journalled.
  returned: success
  type: bool
malformed:
  description: Lines that are not "<unix time> <command> <key>", skipped.
  returned: success
  type: int
size_before:
  description: The journal's size in bytes before O(state=empty).
  returned: O(state=empty)
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.rejoin import (
    JournalError,
    empty_journal,
    read_journal,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.render_memcached_proxy import JOURNAL_PATH


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": JOURNAL_PATH},
            "state": {"type": "str", "choices": ["read", "empty"], "default": "read"},
            "since": {"type": "float", "default": 0},
            "offset": {"type": "int", "default": 0},
            "key_limit": {"type": "int", "default": 200000, "no_log": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["key_limit"] < 1:
        module.fail_json(msg=f"key_limit={params['key_limit']}: must be at least 1")
    try:
        if params["state"] == "read":
            module.exit_json(
                changed=False,
                **read_journal(params["path"], params["since"], params["offset"], params["key_limit"]),
            )
        result = empty_journal(params["path"], check_mode=module.check_mode)
    except JournalError as error:
        module.fail_json(msg=f"path={params['path']}: {error}")
    diff = {
        "before": f"{params['path']}: {result['size_before']} bytes\n",
        "after": f"{params['path']}: 0 bytes\n" if result["exists"] else f"{params['path']}: none\n",
    }
    module.exit_json(
        changed=result["changed"], size_before=result["size_before"], exists=result["exists"], diff=diff
    )


if __name__ == "__main__":
    main()
