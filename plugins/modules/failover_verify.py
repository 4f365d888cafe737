#!/usr/bin/python
"""Ansible module: verify a memcached failover drill with versioned canary keys."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: failover_verify
short_description: Verify failover to the gutter pool, and key integrity, with canary keys
description:
  - Writes versioned canary keys through a router (mcrouter or memcached's proxy) under the
    datacentre's routing prefix, and reads the main shards and the gutter pool directly with
    the stripped key to learn where each canary lives.
  - C(phase=before) writes the canaries and checks every one is readable through the router,
    on exactly one main shard and not on the gutter.
  - C(phase=during) runs while one shard is blocked for the routers. It waits until the router
    fails that shard's keys over to the gutter (C(time_to_failover_s)), writes new versions,
    deletes some canaries through the router, and checks the blocked shard's canaries are on
    the gutter, the other shards' canaries are untouched (on their shard, not on the gutter),
    deleted canaries read as misses and no acknowledged value is lost. With
    C(rejoin_policy=flush) it then flushes the blocked shard directly, while the router is
    still cut off from it.
  - C(phase=after) runs once the block is lifted. It waits (bounded) until the router has
    re-admitted the shard, then counts canaries that read an older value than the newest
    acknowledged one (C(stale_after_rejoin)), deleted canaries that came back
    (C(resurrected_deletes)), and polls the gutter until its copies expire, up to the gutter
    TTL plus a margin.
  - Phases hand their state to each other through a JSON file on the host that runs the module.
  - Where to run it. The blocked shard must stay reachable for the verifier when
    C(rejoin_policy=flush), so run it on the controller (C(delegate_to=localhost)) with the
    router's address, and block the shard only for the routers' addresses. With
    C(rejoin_policy=keep) it can also run on the router host itself.
  - Writing canaries changes the cache, so the module reports C(changed) whenever it wrote,
    deleted or flushed. In check mode it only reads, and says what it would write.
version_added: "0.1.0"
author: mcfleet maintainers (@mcfleet)
options:
  phase:
    description: Which step of the drill to verify.
    type: str
    required: true
    choices: [before, during, after]
  router:
    description: The router to write and read through.
    type: dict
    required: true
    suboptions:
      host:
        description: Name used in messages.
        type: str
      address:
        description: Address of the router.
        type: str
        required: true
      port:
        description: Router port (11213 in the lab and in production).
        type: int
        required: true
      engine:
        description:
          - The router's engine, as the topology model names it. It decides how canaries are
            read through the router. C(memcached_proxy) answers a text C(get) of a prefixed key
            with the stripped key, so reads through it use meta C(mg), whose reply carries no
            key; mcrouter has no meta protocol, so reads through it use text C(get).
        type: str
        choices: [mcrouter, memcached_proxy]
        default: mcrouter
  route_prefix:
    description:
      - The datacentre's routing prefix, for example C(/eqiad/mw/). The router strips it.
      - Empty sends unprefixed keys, which the router hands to its default (local) route.
    type: str
    required: true
  shards:
    description: The datacentre's main shards, as the topology model lists them.
    type: list
    elements: dict
    required: true
    suboptions:
      host:
        description: Inventory name of the shard.
        type: str
        required: true
      address:
        description: Address memcached listens on.
        type: str
        required: true
      port:
        description: memcached port.
        type: int
        required: true
  gutter:
    description: The datacentre's gutter servers.
    type: list
    elements: dict
    required: true
    suboptions:
      host:
        description: Inventory name of the gutter server.
        type: str
        required: true
      address:
        description: Address memcached listens on.
        type: str
        required: true
      port:
        description: memcached port.
        type: int
        required: true
  state_file:
    description: JSON file that carries the canaries from one phase to the next.
    type: path
    required: true
  canaries:
    description: How many canary keys the C(before) phase writes (at least 3 per shard).
    type: int
    default: 300
  run_id:
    description: Names the canaries (C(mcfleet-canary-<run_id>-<n>)); generated when omitted.
    type: str
  blocked_shard:
    description: Inventory name of the blocked main shard. Required for C(phase=during).
    type: str
  blocked_at:
    description: Unix time the block was applied; C(time_to_failover_s) is measured from it.
    type: float
  also_out:
    description:
      - Other main shards out at the same time as O(blocked_shard) (a maintenance batch). Their
        canaries are on the gutter too and are checked by their own C(phase=during), not as
        untouched keys of other shards here.
    type: list
    elements: str
    default: []
  rejoin_policy:
    description:
      - C(flush) empties the blocked shard at the end of C(phase=during), before it is unblocked;
        C(stale_after_rejoin) must then be 0.
      - C(keep) leaves it as it is; C(stale_after_rejoin) is reported.
      - Required for C(phase=during); for C(phase=after) it must match when given.
    type: str
    choices: [flush, keep]
  gutter_ttl_s:
    description: The gutter TTL the routers apply. Required for C(phase=after).
    type: int
  failover_timeout_s:
    description: How long C(phase=during) waits for the router to fail over.
    type: float
    default: 60
  readmission_timeout_s:
    description: How long C(phase=after) waits for the router to re-admit the shard.
    type: float
    default: 60
  expiry_margin_s:
    description: Slack on top of the gutter TTL before a gutter copy counts as not expired.
    type: float
    default: 2
  delete_fraction:
    description: Fraction of the blocked shard's canaries deleted through the router during the outage.
    type: float
    default: 0.1
  timeout_s:
    description: Socket timeout of every request.
    type: float
    default: 2
  cleanup:
    description: Delete every canary through the router at the end of C(phase=after).
    type: bool
    default: true
  fail_on_violation:
    description: Fail the task when a check fails. The state file is written either way.
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Returns details on what has changed (or would change in check mode).
    support: full
"""

EXAMPLES = r"""
- name: Write canaries before the block
  mcfleet.fleet.failover_verify:
    phase: before
    router: {address: 10.89.213.15, port: 11213, engine: memcached_proxy}
    route_prefix: /eqiad/mw/
    shards: "{{ mcfleet.datacentres.eqiad.main }}"
    gutter: "{{ mcfleet.datacentres.eqiad.gutter }}"
    state_file: /tmp/mcfleet-drill/verify.json
  delegate_to: localhost

- name: Verify the failover while mc1001 is blocked, then flush it
  mcfleet.fleet.failover_verify:
    phase: during
    router: {address: 10.89.213.15, port: 11213, engine: memcached_proxy}
    route_prefix: /eqiad/mw/
    shards: "{{ mcfleet.datacentres.eqiad.main }}"
    gutter: "{{ mcfleet.datacentres.eqiad.gutter }}"
    state_file: /tmp/mcfleet-drill/verify.json
    blocked_shard: mc1001
    # applied_at, as returned by mcfleet.fleet.shard_block (registered as shard_block_result)
    blocked_at: "{{ shard_block_result.applied_at }}"
    rejoin_policy: flush
    fail_on_violation: false
  delegate_to: localhost
  register: verify_during

- name: Count stale values after rejoin
  mcfleet.fleet.failover_verify:
    phase: after
    router: {address: 10.89.213.15, port: 11213, engine: memcached_proxy}
    route_prefix: /eqiad/mw/
    shards: "{{ mcfleet.datacentres.eqiad.main }}"
    gutter: "{{ mcfleet.datacentres.eqiad.gutter }}"
    state_file: /tmp/mcfleet-drill/verify.json
    gutter_ttl_s: "{{ mcfleet.gutter_ttl_s }}"
    fail_on_violation: false
  delegate_to: localhost
  register: verify_after
"""

RETURN = r"""
phase:
  description: The phase that ran.
  returned: always
  type: str
run_id:
  description: Names the canaries of this drill.
  returned: always
  type: str
written:
  description: Canary writes sent in this phase.
  returned: always
  type: int
acknowledged:
  description: Canary writes the router (or, for the re-admission sentinel, the shard) answered STORED.
  returned: always
  type: int
lost:
  description: Canaries whose newest acknowledged value the router did not return where it must.
  returned: always
  type: int
on_gutter:
  description: During the block, blocked-shard canaries found on the gutter with their newest value.
  returned: always
  type: int
untouched_elsewhere:
  description: During the block, other shards' canaries still on their own shard and not on the gutter.
  returned: always
  type: int
deleted_still_visible:
  description: Canaries deleted through the router during the block that still read back.
  returned: always
  type: int
stale_after_rejoin:
  description: After rejoin, canaries that read an older value than the newest acknowledged one.
  returned: always
  type: int
missing_after_rejoin:
  description: After rejoin, blocked-shard canaries that read as misses (expected with C(flush)).
  returned: always
  type: int
resurrected_deletes:
  description: After rejoin, canaries deleted during the block that read back again.
  returned: always
  type: int
gutter_expired_within_ttl:
  description: After rejoin, whether every gutter copy was gone within the gutter TTL plus margin.
  returned: always
  type: bool
time_to_failover_s:
  description: From C(blocked_at) (or the phase start) to the first blocked-shard write seen on the gutter.
  returned: always
  type: float
readmitted:
  description: After rejoin, whether the router re-admitted the shard within C(readmission_timeout_s).
  returned: when phase is after
  type: bool
homes:
  description: Canaries per main shard after the before phase.
  returned: when phase is before
  type: dict
violations:
  description: Every failed check, in words.
  returned: always
  type: list
  elements: str
ok:
  description: True when no check failed.
  returned: always
  type: bool
timings_s:
  description:
    - Seconds spent per step (write, read_router, locate, failover_wait, readmission_wait,
      gutter_expiry_wait, cleanup, total).
  returned: always
  type: dict
state_file:
  description: Where the phase state was written.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.failover_verify import (
    PHASES,
    REJOIN_POLICIES,
    FailoverVerifier,
    VerifyError,
    load_state,
    save_state,
)

_SERVER = {
    "host": {"type": "str", "required": True},
    "address": {"type": "str", "required": True},
    "port": {"type": "int", "required": True},
}


def _describe_changes(result: dict, prefix: str) -> str:
    lines = []
    writes = result.get("would_write", result["written"])
    if writes:
        lines.append(f"canary writes: {writes} under {prefix}mcfleet-canary-{result['run_id']}-*")
    deletes = result.get("would_delete", result["cleaned_up"] + result["deletes_acknowledged"])
    if deletes:
        lines.append(f"canary deletes: {deletes}")
    flush = result.get("would_flush") or (result.get("flushed") and result["blocked_shard"])
    if flush:
        lines.append(f"flush_all on {flush}")
    return "".join(line + "\n" for line in lines)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "phase": {"type": "str", "required": True, "choices": list(PHASES)},
            "router": {
                "type": "dict",
                "required": True,
                "options": {
                    "host": {"type": "str"},
                    "address": {"type": "str", "required": True},
                    "port": {"type": "int", "required": True},
                    "engine": {
                        "type": "str",
                        "choices": ["mcrouter", "memcached_proxy"],
                        "default": "mcrouter",
                    },
                },
            },
            "route_prefix": {"type": "str", "required": True},
            "shards": {"type": "list", "elements": "dict", "required": True, "options": _SERVER},
            "gutter": {"type": "list", "elements": "dict", "required": True, "options": _SERVER},
            "state_file": {"type": "path", "required": True},
            "canaries": {"type": "int", "default": 300},
            "run_id": {"type": "str"},
            "blocked_shard": {"type": "str"},
            "also_out": {"type": "list", "elements": "str", "default": []},
            "blocked_at": {"type": "float"},
            "rejoin_policy": {"type": "str", "choices": list(REJOIN_POLICIES)},
            "gutter_ttl_s": {"type": "int"},
            "failover_timeout_s": {"type": "float", "default": 60},
            "readmission_timeout_s": {"type": "float", "default": 60},
            "expiry_margin_s": {"type": "float", "default": 2},
            "delete_fraction": {"type": "float", "default": 0.1},
            "timeout_s": {"type": "float", "default": 2},
            "cleanup": {"type": "bool", "default": True},
            "fail_on_violation": {"type": "bool", "default": True},
        },
        required_if=[
            ("phase", "during", ["blocked_shard", "rejoin_policy"]),
            ("phase", "after", ["gutter_ttl_s"]),
        ],
        supports_check_mode=True,
    )
    p = module.params
    if not 0 < p["delete_fraction"] < 1:
        module.fail_json(
            msg=f"delete_fraction must be between 0 and 1 (exclusive), got {p['delete_fraction']}"
        )
    for name in ("failover_timeout_s", "readmission_timeout_s", "timeout_s"):
        if p[name] <= 0:
            module.fail_json(msg=f"{name} must be positive, got {p[name]}")
    if p["phase"] == "after" and p["gutter_ttl_s"] <= 0:
        module.fail_json(msg=f"gutter_ttl_s must be positive, got {p['gutter_ttl_s']}")

    state = None if p["phase"] == "before" else load_state(p["state_file"])
    if state is None and p["phase"] != "before" and module.check_mode:
        # A dry run of the whole drill never wrote the before phase's state.
        module.exit_json(
            changed=True,
            phase=p["phase"],
            state_file=p["state_file"],
            msg=f"check mode: no state from a real 'before' phase in {p['state_file']};"
            f" would verify phase {p['phase']}",
        )

    try:
        verifier = FailoverVerifier(
            router=p["router"],
            shards=p["shards"],
            gutter=p["gutter"],
            route_prefix=p["route_prefix"],
            timeout_s=p["timeout_s"],
            dry_run=module.check_mode,
        )
        try:
            if p["phase"] == "before":
                result, state = verifier.before(canaries=p["canaries"], run_id=p["run_id"])
            elif p["phase"] == "during":
                result, state = verifier.during(
                    state,
                    blocked_shard=p["blocked_shard"],
                    rejoin_policy=p["rejoin_policy"],
                    blocked_at=p["blocked_at"],
                    failover_timeout_s=p["failover_timeout_s"],
                    delete_fraction=p["delete_fraction"],
                    also_out=tuple(p["also_out"]),
                )
            else:
                result, state = verifier.after(
                    state,
                    gutter_ttl_s=p["gutter_ttl_s"],
                    rejoin_policy=p["rejoin_policy"],
                    readmission_timeout_s=p["readmission_timeout_s"],
                    expiry_margin_s=p["expiry_margin_s"],
                    cleanup=p["cleanup"],
                )
        finally:
            verifier.close()
    except VerifyError as exc:
        module.fail_json(msg=str(exc), phase=p["phase"])

    changes = _describe_changes(result, p["route_prefix"])
    if not module.check_mode:
        save_state(p["state_file"], state)
    result.update(changed=bool(changes), state_file=p["state_file"])
    if module._diff:
        result["diff"] = {"before": "", "after": changes, "after_header": f"memcached ({p['phase']})"}
    if result["violations"] and p["fail_on_violation"]:
        module.fail_json(
            msg=f"failover verification ({p['phase']}): " + "; ".join(result["violations"]), **result
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
