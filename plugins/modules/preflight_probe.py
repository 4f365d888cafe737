#!/usr/bin/python
"""Documentation of the preflight_probe action plugin (plugins/action/preflight_probe.py does the work)."""

DOCUMENTATION = r"""
---
module: preflight_probe
short_description: Read what preflight checks on one host, in one task
description:
  - Runs, on the host, M(mcfleet.fleet.netfilter_rules); then M(mcfleet.fleet.memcached_health) with
    O(memcached) as its arguments on a memcached server, or M(mcfleet.fleet.router_health) with
    O(router) and M(ansible.builtin.stat) (SHA-1) of O(config_path) on a router or proxy. Each
    module runs once; one task instead of one per probe keeps preflight fast on many hosts.
  - Times the health call on the controller and adds C(controller_sent) and C(controller_received)
    to its result, so the host's clock it returns (C(time)) can be checked against the controller's.
  - A module that fails is returned as it failed (C(failed), C(msg)) for the report to judge; the
    task itself fails only on bad arguments, or as unreachable when the host does not answer.
  - Read-only; C(changed) is always false.
version_added: 0.2.0
author: mcfleet maintainers (@mcfleet)
options:
  memcached:
    description: Arguments of M(mcfleet.fleet.memcached_health) (a main shard or a gutter server).
    type: dict
  router:
    description: Arguments of M(mcfleet.fleet.router_health) (an app server's router or a proxy).
    type: dict
  config_path:
    description: The router's deployed config file to checksum (with O(router) only).
    type: str
  certificates:
    description:
      - PEM certificates on the host (TLS) whose expiry preflight checks; each is read with
        M(ansible.builtin.slurp) and returned in C(certificates). Never private keys.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Every module it runs reads only, in check mode too.
  diff_mode:
    support: none
    description: Changes nothing.
  platform:
    support: full
    platforms: debian
    description: Debian hosts of the fleet.
"""

EXAMPLES = r"""
- name: Read a shard
  mcfleet.fleet.preflight_probe:
    memcached:
      address: "{{ mcfleet.hosts[inventory_hostname].address }}"
      port: "{{ mcfleet.hosts[inventory_hostname].port }}"
  register: probe
"""

RETURN = r"""
netfilter:
  description: The result of M(mcfleet.fleet.netfilter_rules) (C(leftovers), C(tables_read)).
  returned: success
  type: dict
memcached:
  description: M(mcfleet.fleet.memcached_health)'s result, with C(controller_sent) and C(controller_received).
  returned: with O(memcached)
  type: dict
router:
  description: M(mcfleet.fleet.router_health)'s result, with C(controller_sent) and C(controller_received).
  returned: with O(router)
  type: dict
config:
  description: The result of M(ansible.builtin.stat) of O(config_path) (C(stat.exists), C(stat.checksum)).
  returned: with O(router) and O(config_path)
  type: dict
config_path:
  description: O(config_path), as read.
  returned: with O(router) and O(config_path)
  type: str
certificates:
  description: Per path in O(certificates), the M(ansible.builtin.slurp) result (C(content), base64).
  returned: with O(certificates)
  type: dict
"""
