#!/usr/bin/python
"""Ansible module: bounded client traffic through a memcached router, for drills."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: traffic
short_description: Send bounded set/get traffic through a router and record a timeline
description:
  - Sends a paced mix of C(set) and C(get) on a small key set (under the routing prefix)
    through a router, and writes one JSON line per request (time, operation, latency,
    outcome C(ok), C(miss), C(error) or C(timeout)) to O(timeline). About once a second it
    also records the gutter servers' C(get_hits)/C(get_misses) counters, so a report can
    show when, and how much, the gutter answered.
  - Stops at the first of O(max_requests), O(max_duration_s) or O(stop_file) appearing.
    Both bounds are required and capped (5,000,000 requests, 86400 s).
  - Lab and loopback only. It refuses any router or gutter address outside 127.0.0.0/8,
    ::1 and O(allowed_networks) (the lab subnet), and sends nothing in that case.
  - Meant to run for a whole drill in the background with C(async) and C(poll=0); touch
    O(stop_file) to end it and collect the summary with C(async_status).
  - With O(pattern=cache_aside) (the LRU comparison's load) it sends gets of keys whose
    popularity follows a Zipf law (O(zipf_s)) over O(key_count) keys, and after each miss a set
    of that key's value (a size fixed per key, log-uniform between O(value_bytes_min) and
    O(value_bytes_max)), from O(threads) connections; its timeline has one line of running
    totals a second. The same bounds and address checks apply.
  - The traffic writes keys to the cache, so the module reports C(changed). Check mode
    validates the plan and the addresses and sends nothing.
version_added: "0.1.0"
author: mcfleet maintainers (@mcfleet)
options:
  router:
    description: The router to send traffic through.
    type: dict
    required: true
    suboptions:
      address:
        description: Router address (must be loopback or inside O(allowed_networks)).
        type: str
        required: true
      port:
        description: Router port.
        type: int
        required: true
      engine:
        description:
          - The router's engine, as the topology model names it. Gets through
            C(memcached_proxy) use meta C(mg) (its text C(get) reply carries the stripped key);
            gets through mcrouter, which has no meta protocol, use text C(get).
        type: str
        choices: [mcrouter, memcached_proxy]
        default: mcrouter
  route_prefix:
    description: Routing prefix of the keys, for example C(/eqiad/mw/).
    type: str
    default: /eqiad/mw/
  gutter:
    description: Gutter servers whose counters are sampled (read-only C(stats)).
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description: Inventory name, informational.
        type: str
      address:
        description: Address of the gutter server.
        type: str
        required: true
      port:
        description: memcached port.
        type: int
        required: true
  timeline:
    description: JSONL file the requests are recorded in (overwritten).
    type: path
    required: true
  stop_file:
    description: When this file appears the traffic stops (checked every 0.2 s).
    type: path
  run_id:
    description: Names the keys (C(mcfleet-traffic-<run_id>-<n>)).
    type: str
  key_count:
    description:
      - How many distinct keys the traffic uses (at most 100,000; 2,000,000 with O(pattern=cache_aside)).
    type: int
    default: 200
  set_ratio:
    description: Fraction of requests that are sets (the rest are deletes and gets).
    type: float
    default: 0.3
  delete_ratio:
    description:
      - Fraction of requests that are deletes (O(pattern=mixed)). Every get is judged against the
        client's own acknowledged sets and deletes; see RV(stale_reads).
    type: float
    default: 0.0
  value_bytes:
    description: Size of the values written.
    type: int
    default: 100
  rate_per_s:
    description: Target request rate (paced, never bursting to catch up).
    type: float
    default: 200
  max_requests:
    description: Hard bound on the number of requests.
    type: int
    required: true
  max_duration_s:
    description: Hard bound on the run time in seconds.
    type: float
    required: true
  timeout_s:
    description: Per-request socket timeout; a request that exceeds it counts as C(timeout).
    type: float
    default: 1.0
  allowed_networks:
    description: Networks besides loopback that traffic may go to (the lab subnet).
    type: list
    elements: str
    default: []
  pattern:
    description: C(mixed) sets and gets on a small key set (drills), or C(cache_aside) (see above).
    type: str
    choices: [mixed, cache_aside]
    default: mixed
  zipf_s:
    description: C(cache_aside) only, the exponent of the key popularity (0 is uniform).
    type: float
    default: 0.9
  value_bytes_min:
    description: C(cache_aside) only, the smallest value size.
    type: int
    default: 100
  value_bytes_max:
    description: C(cache_aside) only, the largest value size.
    type: int
    default: 4000
  threads:
    description: C(cache_aside) only, concurrent client connections (1 to 8).
    type: int
    default: 4
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Returns details on what has changed (or would change in check mode).
    support: none
"""

EXAMPLES = r"""
- name: Start client traffic through mw1001 for the whole drill
  mcfleet.fleet.traffic:
    router: {address: 10.89.213.15, port: 11213, engine: memcached_proxy}
    route_prefix: /eqiad/mw/
    gutter: "{{ topology.datacentres.eqiad.gutter }}"
    timeline: "{{ drill_dir }}/traffic.jsonl"
    stop_file: "{{ drill_dir }}/traffic.stop"
    max_requests: 200000
    max_duration_s: 600
    allowed_networks: ["{{ lab_subnet }}"]
  delegate_to: localhost
  async: 660
  poll: 0
  register: traffic_job
"""

RETURN = r"""
requests:
  description: Requests sent.
  returned: success
  type: int
outcomes:
  description: Requests per outcome (ok, miss, error, timeout); O(pattern=mixed) only.
  returned: success
  type: dict
hit_ratio:
  description: O(pattern=cache_aside) only, the client's hits over its gets.
  returned: success
  type: float
client_errors:
  description: Requests that failed (error plus timeout).
  returned: success
  type: int
stale_reads:
  description:
    - O(pattern=mixed) only, gets that read a value older than the client's last acknowledged set
      of that key.
  returned: success
  type: int
resurrected_reads:
  description: O(pattern=mixed) only, gets that read a value after the client's acknowledged delete.
  returned: success
  type: int
duration_s:
  description: Wall time of the traffic.
  returned: success
  type: float
requests_per_s:
  description: Achieved request rate.
  returned: success
  type: float
latency_ms:
  description: p50, p99 and max latency over the whole run; O(pattern=mixed) only.
  returned: success
  type: dict
stop_reason:
  description: C(max_requests), C(max_duration_s) or C(stop_file).
  returned: success
  type: str
timeline:
  description: Path of the timeline file.
  returned: always
  type: str
plan:
  description: In check mode, the validated plan with resolved addresses.
  returned: check mode
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import (
    TrafficError,
    check_plan,
    default_plan,
    load_plan_problems,
    run,
    run_cache_aside,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "router": {
                "type": "dict",
                "required": True,
                "options": {
                    "address": {"type": "str", "required": True},
                    "port": {"type": "int", "required": True},
                    "engine": {
                        "type": "str",
                        "choices": ["mcrouter", "memcached_proxy"],
                        "default": "mcrouter",
                    },
                },
            },
            "route_prefix": {"type": "str", "default": "/eqiad/mw/"},
            "gutter": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "host": {"type": "str"},
                    "address": {"type": "str", "required": True},
                    "port": {"type": "int", "required": True},
                },
            },
            "timeline": {"type": "path", "required": True},
            "stop_file": {"type": "path"},
            "run_id": {"type": "str"},
            "key_count": {"type": "int", "default": 200},
            "set_ratio": {"type": "float", "default": 0.3},
            "delete_ratio": {"type": "float", "default": 0.0},
            "value_bytes": {"type": "int", "default": 100},
            "rate_per_s": {"type": "float", "default": 200},
            "max_requests": {"type": "int", "required": True},
            "max_duration_s": {"type": "float", "required": True},
            "timeout_s": {"type": "float", "default": 1.0},
            "allowed_networks": {"type": "list", "elements": "str", "default": []},
            "pattern": {"type": "str", "choices": ["mixed", "cache_aside"], "default": "mixed"},
            "zipf_s": {"type": "float", "default": 0.9},
            "value_bytes_min": {"type": "int", "default": 100},
            "value_bytes_max": {"type": "int", "default": 4000},
            "threads": {"type": "int", "default": 4},
        },
        supports_check_mode=True,
    )
    overrides = {k: v for k, v in module.params.items() if v is not None and k != "pattern"}
    cache_aside = module.params["pattern"] == "cache_aside"
    plan = default_plan(**overrides)
    try:
        targets = check_plan(plan, load_plan_problems if cache_aside else None)
    except TrafficError as exc:
        module.fail_json(msg=str(exc), timeline=plan["timeline"])
    if module.check_mode:
        module.exit_json(changed=True, timeline=plan["timeline"], plan={**plan, "resolved": targets})
    try:
        summary = run_cache_aside(plan) if cache_aside else run(plan)
    except (TrafficError, OSError) as exc:
        module.fail_json(msg=f"traffic: {exc}", timeline=plan["timeline"])
    module.exit_json(changed=summary["requests"] > 0, **summary)


if __name__ == "__main__":
    main()
