#!/usr/bin/python
"""Delete the keys a returning shard may hold stale, before and after it rejoins."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: shard_invalidate
short_description: Delete on a returning shard the keys clients changed while it was out
description:
  - Deletes O(keys) (the routers' failover journals, read by M(mcfleet.fleet.failover_journal))
    on the memcached server at O(address):O(port), so a shard that comes back holding data
    serves nothing older than what clients wrote or deleted through the gutter meanwhile.
  - With more keys than O(flush_over), or O(flush=true) (a journal that overflowed), empties the
    shard instead (C(flush_all)), cold but never stale.
  - Reports how many keys the shard held (each would have been a stale read), how many it did
    not, and how many were copied from the gutter.
  - Runs on the controller, which reaches the shard and the gutter while the routers are cut off.
version_added: 0.9.0
author: mcfleet maintainers (@mcfleet)
options:
  address:
    description: The shard's address.
    type: str
    required: true
  port:
    description: The shard's port.
    type: int
    default: 11211
  keys:
    description: The keys to delete.
    type: list
    elements: str
    default: []
  copy_from:
    description:
      - The gutter servers (C(address), C(port)). A key one of them still holds (for more than
        a second) is copied to the shard with the time it has left to live, instead of deleted.
        That is the newest value as long as the shard is still cut off from the routers.
    type: list
    elements: dict
    default: []
  flush:
    description: Empty the shard whatever O(keys) holds.
    type: bool
    default: false
  flush_over:
    description: More distinct keys than this empty the shard instead.
    type: int
    default: 200000
  timeout_s:
    description: Connect and read timeout, in seconds.
    type: float
    default: 2.0
attributes:
  check_mode:
    support: full
    description: Asks the shard which of the keys it holds and deletes nothing.
  diff_mode:
    support: full
    description: The count of held keys before, and after.
  platform:
    support: full
    platforms: posix
    description: Any host that reaches the shard while it is blocked for the routers (its own).
"""

EXAMPLES = r"""
- name: Delete the keys changed on the gutter while the shard was out
  mcfleet.fleet.shard_invalidate:
    address: "{{ shard_window.address }}"
    port: "{{ shard_window.port }}"
    keys: "{{ journals.results | map(attribute='keys') | flatten | unique }}"
"""

RETURN = r"""
deleted:
  description: Keys the shard held and deleted (held, in check mode).
  returned: success
  type: int
absent:
  description: Keys the shard did not hold.
  returned: success
  type: int
copied:
  description: Keys copied from the gutter.
  returned: success
  type: int
flushed:
  description: Whether the shard was emptied instead.
  returned: success
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import MemcacheError
from ansible_collections.mcfleet.fleet.plugins.module_utils.rejoin import invalidate


def main():
    module = AnsibleModule(
        argument_spec={
            "address": {"type": "str", "required": True},
            "port": {"type": "int", "default": 11211},
            "keys": {"type": "list", "elements": "str", "default": [], "no_log": False},
            "copy_from": {"type": "list", "elements": "dict", "default": []},
            "flush": {"type": "bool", "default": False},
            "flush_over": {"type": "int", "default": 200000},
            "timeout_s": {"type": "float", "default": 2.0},
        },
        supports_check_mode=True,
    )
    params = module.params
    keys = list(dict.fromkeys(params["keys"]))
    flush = params["flush"] or len(keys) > params["flush_over"]
    target = f"{params['address']}:{params['port']}"
    try:
        result = invalidate(
            params["address"],
            params["port"],
            keys,
            flush=flush,
            check_mode=module.check_mode,
            timeout_s=params["timeout_s"],
            copy_from=[(server["address"], int(server.get("port", 11211))) for server in params["copy_from"]],
        )
    except (OSError, MemcacheError) as error:
        module.fail_json(msg=f"address={target}: {error}")
    held = "every key" if result["flushed"] else f"{result['deleted'] + result['copied']} of {len(keys)} keys"
    module.exit_json(
        changed=result["flushed"] or result["deleted"] > 0,
        diff={"before": f"{target}: holds {held}\n", "after": f"{target}: holds none of them\n"},
        **result,
    )


if __name__ == "__main__":
    main()
