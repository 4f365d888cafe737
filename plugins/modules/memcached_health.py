#!/usr/bin/python
"""Read a memcached server's health: version, settings against its config and expectations."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memcached_health
short_description: Read a memcached server's version, settings, counters and release
description:
  - Asks the memcached on O(address):O(port) for its version, C(stats settings) and counters,
    reads the config file it was started from, and reports two kinds of difference, each as
    host-independent items C({setting, expected, actual}) named as C(stats settings) names them.
  - RV(pending) is the config file on disk against the running process (a restart is pending).
  - RV(drift) is O(expected_settings) (what the inventory configures) against the running process.
  - Also returns the host's Debian release and clock, so a preflight can check them in the same call.
  - Read-only, except that O(round_trip) sets one key with a 30 s expiry and reads it back
    (skipped in check mode); that probe is not a change of state, so C(changed) is always false.
  - A memcached that does not answer is reported (RV(running) false, RV(error)), not a failure;
    the caller decides what it means.
version_added: 0.2.0
author: mcfleet maintainers (@mcfleet)
options:
  address:
    description: Address memcached listens on (the topology model's address of the host).
    type: str
    required: true
  port:
    description: memcached's TCP port (the model's port of the host).
    type: int
    required: true
  config_path:
    description: The config file memcached is started from (Debian's wrapper reads it).
    type: path
    default: /etc/memcached.conf
  expected_settings:
    description: C(stats settings) names and the values the inventory configures, e.g. C(maxbytes).
    type: dict
    default: {}
  round_trip:
    description: Set and read back a short-lived key on the server.
    type: bool
    default: false
  unit:
    description:
      - The systemd unit that runs this memcached. The config file counts as newer than the
        process when it was modified after the unit's main process started (the kernel's start
        time, not memcached's C(uptime), which runs about 2 s ahead in whole seconds).
      - When the unit runs no process on this host, only the contents (RV(pending)) decide.
    type: str
    default: memcached
attributes:
  check_mode:
    support: full
    description: Reads only; the round trip is skipped in check mode.
  diff_mode:
    support: none
    description: Changes nothing.
  platform:
    support: full
    platforms: debian
    description: Debian hosts running memcached.
"""

EXAMPLES = r"""
- name: Read the shard's health against the inventory's settings
  mcfleet.fleet.memcached_health:
    address: "{{ mcfleet.hosts[inventory_hostname].address }}"
    port: "{{ mcfleet.hosts[inventory_hostname].port }}"
    expected_settings:
      maxbytes: "{{ memcached_memory_mb * 1048576 }}"
      maxconns: "{{ memcached_max_connections }}"
    round_trip: true
  register: shard_health
"""

RETURN = r"""
running:
  description: Whether memcached answered.
  returned: always
  type: bool
error:
  description: Why memcached did not answer.
  returned: when not running
  type: str
version:
  description: memcached's version.
  returned: when running
  type: str
  sample: 1.6.38
release:
  description: The host's Debian release (VERSION_CODENAME of /etc/os-release).
  returned: always
  type: str
  sample: trixie
time:
  description: The host's clock (seconds since the epoch) when it answered.
  returned: always
  type: float
settings:
  description: The running values of the compared settings (all of C(stats settings) is not returned).
  returned: when running
  type: dict
pending:
  description: Settings the config file on disk sets differently from the running process.
  returned: when running
  type: list
  elements: dict
restart_pending:
  description:
    - Whether RV(pending) is not empty, or the config file was modified after the unit's main
      process started.
  returned: when running
  type: bool
drift:
  description: Settings the inventory expects that the running process does not have.
  returned: when running
  type: list
  elements: dict
counters:
  description: bytes, limit_maxbytes, curr_items, get_hits, get_misses, evictions, uptime.
  returned: when running
  type: dict
hit_ratio:
  description: get_hits / (get_hits + get_misses), null before the first get.
  returned: when running
  type: float
round_trip:
  description: Whether a set and a get of a probe key worked (null when not asked or in check mode).
  returned: always
  type: bool
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcached_health import (
    HealthError,
    debian_release,
    drift,
    hit_ratio,
    modified_after_start,
    read_server,
    round_trip,
    settings_from_config,
)


def unit_main_pid(module, unit):
    """The unit's main process, None when systemd runs no such process here."""
    systemctl = module.get_bin_path("systemctl")
    if not unit or not systemctl:
        return None
    rc, out, _err = module.run_command([systemctl, "show", "--property=MainPID", "--value", unit])
    pid = out.strip()
    if rc != 0 or not pid.isdigit() or pid == "0":
        return None
    return int(pid)


def main():
    module = AnsibleModule(
        argument_spec={
            "address": {"type": "str", "required": True},
            "port": {"type": "int", "required": True},
            "config_path": {"type": "path", "default": "/etc/memcached.conf"},
            "expected_settings": {"type": "dict", "default": {}},
            "round_trip": {"type": "bool", "default": False},
            "unit": {"type": "str", "default": "memcached"},
        },
        supports_check_mode=True,
    )
    params = module.params
    result = {"changed": False, "release": debian_release(), "time": time.time(), "round_trip": None}
    try:
        server = read_server(params["address"], params["port"])
    except HealthError as error:
        module.exit_json(running=False, error=str(error), **result)
    on_disk = {}
    config_newer = False
    if os.path.exists(params["config_path"]):
        with open(params["config_path"]) as stream:
            on_disk = settings_from_config(stream.read())
        # The unit's main process, when systemd runs memcached here: its real start time.
        # Without it only the contents decide (never memcached's `uptime`, which runs ahead).
        main_pid = unit_main_pid(module, params["unit"])
        config_newer = bool(main_pid and modified_after_start(params["config_path"], main_pid))
    compared = sorted(set(on_disk) | set(params["expected_settings"]))
    pending = drift(on_disk, server["settings"])
    result.update(
        running=True,
        version=server["version"],
        settings={name: server["settings"].get(name) for name in compared},
        pending=pending,
        restart_pending=bool(pending) or config_newer,
        drift=drift(params["expected_settings"], server["settings"]),
        counters=server["counters"],
        hit_ratio=hit_ratio(server["counters"]),
    )
    if params["round_trip"] and not module.check_mode:
        result["round_trip"] = round_trip(params["address"], params["port"], "mcfleet:health:round-trip")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
