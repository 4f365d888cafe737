#!/usr/bin/python
"""Read `stats`, `stats items`, `stats slabs` and `stats settings` of memcached servers."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memcached_stats
short_description: Read the LRU and slab statistics of memcached servers
description:
  - Reads C(stats), C(stats items), C(stats slabs) and C(stats settings) from every server in
    O(servers), one connection each, and returns them per server with the time they were read,
    as the input of M(mcfleet.fleet.lru_report).
  - Fails, naming the server and its address, when any server does not answer (a shadow
    target that is down is refused before any router sends it traffic).
  - Read-only; C(changed) is always false. Runs where the servers are reachable (the controller
    in the lab).
version_added: 0.3.0
author: mcfleet maintainers (@mcfleet)
options:
  servers:
    description:
      - The servers to read, each with C(host) (a name, the key of RV(snapshots)), C(address) and
        optionally C(port) (11211). Other keys are ignored, so the topology model's entries and the
        LRU comparison's server descriptions can be passed as they are.
    type: list
    elements: dict
    required: true
  timeout_s:
    description: Connect and read timeout per server, in seconds.
    type: float
    default: 2.0
attributes:
  check_mode:
    support: full
    description: Reads only, the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing.
  platform:
    support: full
    platforms: posix
    description: Any host that reaches the servers.
"""

EXAMPLES = r"""
- name: Read both sides of the LRU comparison
  mcfleet.fleet.memcached_stats:
    servers: "{{ mcfleet.shadow.candidates }}"
  register: lru_warm
  delegate_to: localhost
"""

RETURN = r"""
snapshots:
  description:
    - Per server C(stats), C(items), C(slabs), C(settings) (each name to value, as memcached
      prints them) and C(read_at) (Unix time).
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.lru_compare import CompareError, read_snapshot


def main():
    module = AnsibleModule(
        argument_spec={
            "servers": {"type": "list", "elements": "dict", "required": True},
            "timeout_s": {"type": "float", "default": 2.0},
        },
        supports_check_mode=True,
    )
    snapshots, problems = {}, []
    for index, server in enumerate(module.params["servers"]):
        try:
            snapshots[server["host"]] = read_snapshot(
                server["address"], server["port"], module.params["timeout_s"]
            )
        except CompareError as error:
            problems.append(f"servers[{index}] {server['host']}: {error}")
    if problems:
        module.fail_json(msg="; ".join(problems))
    module.exit_json(changed=False, snapshots=snapshots)


if __name__ == "__main__":
    main()
