#!/usr/bin/python
"""Ansible module: measure cross-datacentre replication through a router, for proxy drills."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: replication_check
short_description: Write and delete replicated keys through a router and count what reaches another datacentre
description:
  - Writes O(count) keys with the broadcast prefix C(/*/mw-wan/) through O(router), one at a
    time, and times each until it is visible on O(remote_shards) (read directly, without the
    prefix, as the routers store keys); then deletes each the same way and times its
    disappearance. A key not there within O(deadline_s) is counted as lost. Once one is lost,
    later keys are not waited for one by one; they get one more look at the end.
  - With O(reader) (a router or proxy of the other datacentre), each key that arrived must
    read back through it, i.e. sit on the shard that datacentre's own routing picks.
  - Sends only to loopback and O(allowed_networks); anything else is refused before a
    request is sent.
  - Runs where it is called (the controller in the lab, the router host elsewhere).
version_added: "0.3.0"
author:
  - mcfleet maintainers (@mcfleet)
options:
  router:
    description: The router that writes (its address and port).
    type: dict
    required: true
    suboptions:
      address:
        description: Address of the router.
        type: str
        required: true
      port:
        description: Port of the router.
        type: int
        required: true
  remote_shards:
    description: The other datacentre's main shards, read directly.
    type: list
    elements: dict
    required: true
    suboptions:
      address:
        description: Address of the shard.
        type: str
        required: true
      port:
        description: Port of the shard.
        type: int
        required: true
      host:
        description: Inventory name (for reading only).
        type: str
  local_shards:
    description: The writing datacentre's main and gutter servers; each key must be there once acknowledged.
    type: list
    elements: dict
    default: []
    suboptions:
      address:
        description: Address of the server.
        type: str
        required: true
      port:
        description: Port of the server.
        type: int
        required: true
      host:
        description: Inventory name (for reading only).
        type: str
  reader:
    description:
      - A memcached-proxy router or proxy of the other datacentre to read each arrived key back
        through (meta protocol).
    type: dict
    suboptions:
      address:
        description: Its address.
        type: str
        required: true
      port:
        description: Its port.
        type: int
        required: true
  count:
    description: Keys to write and delete (1 to 10000).
    type: int
    default: 100
  deadline_s:
    description: Seconds a key may take to arrive (or go) before it counts as lost.
    type: float
    default: 3.0
  allowed_networks:
    description: Networks besides loopback that may receive requests (the lab subnet).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Validates the targets and sends nothing.
  diff_mode:
    support: none
    description: Writes only its own short-lived test keys.
  platform:
    support: full
    platforms: posix
    description: Any host that reaches the router and the shards.
"""

EXAMPLES = r"""
- name: Count replicated writes that reach codfw with its primary proxy blocked
  mcfleet.fleet.replication_check:
    router: {address: 10.89.213.15, port: 11213}
    remote_shards: "{{ mcfleet.datacentres.codfw.main }}"
    count: 200
    allowed_networks: ["{{ lab_subnet }}"]
  delegate_to: localhost
"""

RETURN = r"""
attempted:
  description: Keys written.
  returned: success
  type: int
acknowledged:
  description: Sets the router answered as stored (the local leg).
  returned: success
  type: int
set_arrived:
  description: Sets visible on the remote shards within the deadline.
  returned: success
  type: int
set_arrived_late:
  description: Of RV(set_arrived), sets seen only in the final look, one O(deadline_s) after the last write.
  returned: success
  type: int
set_lost:
  description: Sets never visible on the remote shards.
  returned: success
  type: int
delete_arrived:
  description: Deletes that removed the key from the remote shards within the deadline.
  returned: success
  type: int
delete_lost:
  description: Deletes that never reached the remote shards.
  returned: success
  type: int
local_missing:
  description: Acknowledged sets missing locally, or deleted keys still there.
  returned: success
  type: int
wrong_shard:
  description: Arrived keys that do not read back through O(reader).
  returned: success
  type: int
on_more_than_one_shard:
  description: Arrived keys found on more than one remote shard.
  returned: success
  type: int
keys_per_remote_shard:
  description: Arrived keys per remote shard, in O(remote_shards) order.
  returned: success
  type: list
  elements: int
set_delay_ms:
  description: Replication delay of sets, write to visible (p50, p99).
  returned: success
  type: dict
delete_delay_ms:
  description: Replication delay of deletes (p50, p99).
  returned: success
  type: dict
errors:
  description: The first client errors (at most 10).
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import MemcacheClient
from ansible_collections.mcfleet.fleet.plugins.module_utils.replication import check_replication, clients
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import TrafficError, resolve_allowed

ENDPOINT = {"address": {"type": "str", "required": True}, "port": {"type": "int", "required": True}}
SERVER = {**ENDPOINT, "host": {"type": "str"}}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "router": {"type": "dict", "required": True, "options": ENDPOINT},
            "remote_shards": {"type": "list", "elements": "dict", "required": True, "options": SERVER},
            "local_shards": {"type": "list", "elements": "dict", "default": [], "options": SERVER},
            "reader": {"type": "dict", "options": ENDPOINT},
            "count": {"type": "int", "default": 100},
            "deadline_s": {"type": "float", "default": 3.0},
            "allowed_networks": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    if not 1 <= params["count"] <= 10000:
        module.fail_json(msg=f"count: {params['count']} is not from 1 to 10000")
    if not 0 < params["deadline_s"] <= 60:
        module.fail_json(msg=f"deadline_s: {params['deadline_s']} is not above 0 and at most 60")
    if not params["remote_shards"]:
        module.fail_json(msg="remote_shards: empty; name the other datacentre's main shards")
    endpoints = [params["router"], *params["remote_shards"], *params["local_shards"]]
    if params["reader"]:
        endpoints.append(params["reader"])
    try:
        for endpoint in endpoints:
            resolve_allowed(endpoint["address"], params["allowed_networks"])
    except TrafficError as error:
        module.fail_json(msg=str(error))
    if module.check_mode:
        module.exit_json(changed=False, msg=f"would write and delete {params['count']} replicated keys")
    router = MemcacheClient(params["router"]["address"], params["router"]["port"])
    reader = None
    if params["reader"]:
        reader = MemcacheClient(params["reader"]["address"], params["reader"]["port"], read_protocol="meta")
    result = check_replication(
        router,
        clients(params["remote_shards"]),
        params["count"],
        params["deadline_s"],
        local_shards=clients(params["local_shards"]),
        reader=reader,
    )
    # Short-lived test keys, each deleted again: the fleet is as it was.
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
