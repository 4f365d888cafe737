#!/usr/bin/python
"""Ask a router which memcached backends it holds as bad (TKO, marked bad)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: router_health
short_description: Ask a router which backends it currently holds as bad
description:
  - mcrouter answers C(stats suspect_servers) with every server it has marked TKO
    (soft or hard) and its failure count.
  - memcached's built-in proxy answers C(stats proxybe) with the backends it currently holds
    as bad (an empty answer when all are healthy), and plain C(stats) with the cumulative
    counters C(proxy_backend_marked_bad) and C(proxy_backend_failed).
  - Returns the bad backends named by their inventory host where O(backends) knows them.
    C(healthy) is about O(backends) only (a datacentre's shards and gutter servers); a bad
    backend the list does not name (another datacentre's shard or proxy) is returned with
    C(known=false) and does not make the router unhealthy.
    Read-only; C(changed) is always false. A router that does not answer is reported, not a failure.
  - Also returns the host's Debian release and clock, so a preflight can check them in the same call.
version_added: 0.2.0
author: mcfleet maintainers (@mcfleet)
options:
  engine:
    description: The router's engine (the topology model's C(routers.<host>.engine)).
    type: str
    required: true
    choices: [mcrouter, memcached_proxy]
  address:
    description: Address the router listens on (loopback works for mcrouter on its own host).
    type: str
    required: true
  port:
    description: The router's port.
    type: int
    required: true
  backends:
    description: Backends the router routes to, as the model lists them (C(host), C(address), C(port)).
    type: list
    elements: dict
    default: []
attributes:
  check_mode:
    support: full
    description: Reads only.
  diff_mode:
    support: none
    description: Changes nothing.
  platform:
    support: full
    platforms: debian
    description: Debian hosts running a router.
"""

EXAMPLES = r"""
- name: Ask the router which shards it holds as bad
  mcfleet.fleet.router_health:
    engine: "{{ mcfleet.routers[inventory_hostname].engine }}"
    address: "{{ mcfleet.routers[inventory_hostname].address }}"
    port: "{{ mcfleet.routers[inventory_hostname].port }}"
    backends: "{{ dc.main + dc.gutter }}"
  vars:
    dc: "{{ mcfleet.datacentres[mcfleet.routers[inventory_hostname].datacentre] }}"
  register: router_health
"""

RETURN = r"""
answered:
  description: Whether the router answered.
  returned: always
  type: bool
error:
  description: Why the router did not answer.
  returned: when not answered
  type: str
healthy:
  description: Answered and holds none of O(backends) as bad (no backend at all when O(backends) is empty).
  returned: always
  type: bool
bad:
  description: Backends held as bad, each with C(host), C(status) and C(known) (named by O(backends)).
  returned: always
  type: list
  elements: dict
release:
  description: The host's Debian release (VERSION_CODENAME of /etc/os-release).
  returned: always
  type: str
  sample: trixie
time:
  description: The host's clock (seconds since the epoch) when the module started.
  returned: always
  type: float
counters:
  description: memcached proxy only, proxy_backend_total, proxy_backend_marked_bad and proxy_backend_failed.
  returned: when answered
  type: dict
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcached_health import (
    HealthError,
    debian_release,
    read_router,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "engine": {"type": "str", "required": True, "choices": ["mcrouter", "memcached_proxy"]},
            "address": {"type": "str", "required": True},
            "port": {"type": "int", "required": True},
            "backends": {"type": "list", "elements": "dict", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    host = {"release": debian_release(), "time": time.time()}
    try:
        health = read_router(params["engine"], params["address"], params["port"], params["backends"])
    except HealthError as error:
        module.exit_json(changed=False, answered=False, healthy=False, bad=[], error=str(error), **host)
    # Another datacentre's backend held as bad (a cross-datacentre timeout) does not take any
    # of O(backends) out: it is reported, and judged by the caller.
    judged = [entry for entry in health["bad"] if entry["known"]] if params["backends"] else health["bad"]
    healthy = not judged
    module.exit_json(changed=False, answered=True, healthy=healthy, **host, **health)


if __name__ == "__main__":
    main()
