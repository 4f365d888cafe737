#!/usr/bin/python
"""Documentation of the topology action plugin (plugins/action/topology.py does the work)."""

DOCUMENTATION = r"""
---
module: topology
short_description: Build and validate the mcfleet topology model from the inventory
description:
  - Reads the inventory groups C(memcached_main), C(memcached_gutter), C(routers),
    C(proxies_primary) and C(proxies_secondary), each host's C(mcfleet_address) and
    C(mcfleet_datacentre), and the fleet-wide C(mcfleet_*) settings, and turns them into one
    validated model set as a fact (default C(mcfleet)) that every role, template and module reads.
  - An invalid inventory fails the task with one message that lists every problem, each naming
    the field and the value it got. Whole numbers and booleans given as text (as C(-e) gives them)
    are read as numbers and booleans.
  - Runs on the controller only; contacts no host. Use it once per play with C(run_once).
version_added: 0.2.0
author: mcfleet maintainers (@mcfleet)
options:
  fact_name:
    description: Name of the fact the model is set as.
    type: str
    default: mcfleet
  shadow:
    description:
      - A shadow of one main shard's traffic for this run, in the shape of the inventory's
        C(mcfleet_shadow), which it replaces. Without it the inventory's C(mcfleet_shadow) holds
        (none by default).
      - C(shard) (a main shard), C(candidates) (spare servers, each C(host), C(address),
        optional C(port); never a production host), optional C(key_fraction) (C([from, to]) in
        [0, 1]) and C(routers) (routers of the shard's datacentre; all of them by default).
    type: dict
attributes:
  check_mode:
    support: full
    description: Reads the inventory only, so it runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to diff.
  platform:
    support: full
    platforms: all
    description: Runs on the controller.
"""

EXAMPLES = r"""
- name: Build the topology model (fails listing every problem at once)
  mcfleet.fleet.topology:
  run_once: true

- name: The same model with mc1001's traffic copied to a spare server
  mcfleet.fleet.topology:
    shadow:
      shard: mc1001
      candidates:
        - {host: lru-candidate, address: 10.89.213.41, port: 11211}
      key_fraction: [0.0, 1.0]
  run_once: true
"""

RETURN = r"""
ansible_facts:
  description: The model, under the name given by O(fact_name).
  returned: success
  type: dict
  contains:
    mcfleet:
      description: Datacentres, pools, ports, gutter TTL, TKO settings, routers and hosts.
      returned: success
      type: dict
problems:
  description: Every problem found, one string each, naming the field and the value.
  returned: failure
  type: list
  elements: str
"""
