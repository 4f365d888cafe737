#!/usr/bin/python
"""Carry memcached's restartable cache to disk and back across a reboot."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: restart_file_carry
short_description: Carry memcached's restartable cache across a reboot
description:
  - memcached started with C(-e) keeps its cache in a memory file on a tmpfs and, stopped with
    SIGUSR1, writes the file's metadata beside it; the next start on that file takes the items
    back. A reboot empties the tmpfs, so an in-place upgrade copies both files to disk before it
    (O(state=saved)) and back after it (O(state=restored)).
  - The copy leaves the memory file's zero blocks as holes, so a half-full cache takes about half
    its size on disk. Each end is written to a temporary name and renamed, without following links.
  - O(state=saved) removes any copy an earlier window left, then copies, marked with O(run_id).
    Where memcached saved nothing, or the disk has too little room, it copies nothing and says
    why in RV(why); the upgrade then returns cold.
  - O(state=restored) copies back only a copy marked with O(run_id), owned by O(owner), then
    removes the disk copy. Any other copy holds values the routers have since replaced.
version_added: 0.10.0
author: mcfleet maintainers (@mcfleet)
options:
  memory_file:
    description: memcached's memory file (its C(-e) option, the role's C(memcached_restart_file)).
    type: path
    required: true
  store:
    description: The directory on disk the copy goes to; created root's and 0700, or checked.
    type: path
    default: /var/lib/mcfleet/carried-cache
  state:
    description: Save the cache to O(store), or restore it from there.
    type: str
    choices: [saved, restored]
    required: true
  run_id:
    description: The maintenance run the copy belongs to.
    type: str
    required: true
  owner:
    description: With O(state=restored), the user memcached runs as (the files become theirs).
    type: str
    default: memcache
attributes:
  check_mode:
    support: full
    description: Reports what it would copy and copies nothing.
  diff_mode:
    support: full
    description: Shows where the cache is before and after.
  platform:
    support: full
    platforms: posix
    description: The memcached server.
"""

EXAMPLES = r"""
- name: Save memcached's cache to disk before the reboot
  mcfleet.fleet.restart_file_carry:
    state: saved
    memory_file: /var/lib/memcached-restart/memory_file
    run_id: "{{ maintenance_run.id }}"
  register: cache_saved
"""

RETURN = r"""
saved:
  description: Whether the cache was copied to O(store) (O(state=saved)).
  returned: O(state=saved)
  type: bool
restored:
  description: Whether the cache was copied back (O(state=restored)).
  returned: O(state=restored)
  type: bool
why:
  description: What was copied, or why nothing was.
  returned: success
  type: str
bytes:
  description: The files' apparent size (all of it is read).
  returned: success
  type: int
written:
  description: The bytes that were not zero, and so were written.
  returned: success
  type: int
allocated:
  description: The bytes the cache takes on its tmpfs (the room it needs on disk).
  returned: O(state=saved)
  type: int
seconds:
  description: Time the copy took.
  returned: success
  type: float
rate_mb_s:
  description: Copy rate, megabytes (10^6 bytes) read per second.
  returned: success
  type: float
"""

import pwd

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.cache_carry import CarryError, restore, save


def main():
    module = AnsibleModule(
        argument_spec={
            "memory_file": {"type": "path", "required": True},
            "store": {"type": "path", "default": "/var/lib/mcfleet/carried-cache"},
            "state": {"type": "str", "choices": ["saved", "restored"], "required": True},
            "run_id": {"type": "str", "required": True},
            "owner": {"type": "str", "default": "memcache"},
        },
        supports_check_mode=True,
    )
    params = module.params
    memory_file, store = params["memory_file"], params["store"]
    if not memory_file.startswith("/") or memory_file.endswith("/"):
        module.fail_json(msg=f"memory_file={memory_file}: must be an absolute file name")
    try:
        if params["state"] == "saved":
            result = save(memory_file, store, params["run_id"], check_mode=module.check_mode)
            changed = result["saved"]
            diff = {
                "before": f"cache: {memory_file}\n",
                "after": f"cache: {memory_file}, copied to {store}\n",
            }
        else:
            try:
                account = pwd.getpwnam(params["owner"])
            except KeyError:
                module.fail_json(msg=f"owner={params['owner']}: no such user on this host")
            result = restore(
                memory_file,
                store,
                params["run_id"],
                account.pw_uid,
                account.pw_gid,
                check_mode=module.check_mode,
            )
            changed = result["restored"]
            diff = {"before": f"cache: {store}\n", "after": f"cache: {memory_file}\n"}
    except (CarryError, OSError) as error:
        module.fail_json(msg=f"memory_file={memory_file}: {error}")
    module.exit_json(changed=changed, diff=diff if changed else {}, **result)


if __name__ == "__main__":
    main()
