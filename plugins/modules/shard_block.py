#!/usr/bin/python
"""Ansible module: block (or unblock) a memcached shard's port for a failover drill."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: shard_block
short_description: Block a memcached shard's port for a failover drill, with an on-host rollback timer
description:
  - Runs on the shard host. Blocks TCP to the memcached port from every client, or only from
    O(sources) (the routers), so the routers fail over to the gutter pool.
  - The rules live in one dedicated chain (O(chain)) per address family, reached by one commented
    jump rule inserted at the top of INPUT, so it precedes any C(ESTABLISHED) accept and the client
    firewall's chain (M(mcfleet.fleet.client_firewall) keeps its own jump below every drill jump).
    A jump found below anything but another drill or maintenance jump is moved back to the top.
    Loopback (C(-i lo)) is never blocked and only the given port is matched, so SSH is never affected.
  - IPv4 with iptables and IPv6 with ip6tables. Blocking every client mirrors the block in both
    families where ip6tables works; with sources, each family gets the sources of its version.
  - The iptables backend (nf_tables or legacy) is read from C(iptables -V), recorded in a state
    file under O(state_dir), and the same backend's binaries are used to lift the block.
  - Before anything is blocked, a rollback script (plain C(/bin/sh), no Python) is written to
    O(state_dir) and a transient systemd timer (C(systemd-run --on-active)) is armed to run it,
    so the block lifts by itself if the controller dies. The timer is re-armed whenever the
    block changes.
  - O(state=absent) removes exactly the jump rules that target O(chain) and the chain itself,
    then stops the timer. Rules it did not create are never touched.
version_added: "0.1.0"
author:
  - mcfleet maintainers (@mcfleet)
options:
  state:
    description: V(present) blocks, V(absent) lifts the block and disarms the timer.
    type: str
    choices: [present, absent]
    default: present
  port:
    description: The memcached TCP port to block (never 22).
    type: int
    default: 11211
  mode:
    description:
      - V(reject) answers with a TCP reset ("process dead"); routers see connect refused and
        mark the shard TKO at once.
      - V(drop) discards packets ("host vanished"); routers fail over only after timeouts.
    type: str
    choices: [reject, drop]
    default: reject
  sources:
    description:
      - Addresses or CIDR networks (IPv4 or IPv6) to block. Empty blocks every client.
    type: list
    elements: str
    default: []
  rollback_after_s:
    description:
      - Seconds after which the on-host timer lifts the block. Required with O(state=present);
        must be from 1 to 86400.
    type: int
  flush_conntrack:
    description:
      - Delete the port's conntrack entries (from O(sources) if given) after blocking, so
        established router connections are cut. Needs the C(conntrack) tool.
    type: bool
    default: false
  chain:
    description:
      - The dedicated chain, V(MCFLEET-DRILL[-<NAME>]) for drills or V(MCFLEET-MAINT[-<NAME>]) for
        maintenance (capitals and digits, at most 28 characters), so no other role's C(MCFLEET-*)
        chain can ever be named here.
    type: str
    default: MCFLEET-DRILL
  netns:
    description:
      - Apply the block inside this network namespace (C(ip netns exec)), e.g. where memcached
        runs in a namespace. The rollback script enters the same namespace.
    type: str
  state_dir:
    description: Where the state record and the rollback script are written.
    type: path
    default: /run/mcfleet
  backend:
    description:
      - The iptables backend for a new block. V(auto) reads it from C(iptables -V).
      - A block that exists is always changed and lifted with the backend recorded when it was
        made, whatever this says.
    type: str
    choices: [auto, nf_tables, legacy]
    default: auto
  restore_memcached:
    description:
      - For a maintenance window that stops memcached. When the timer fires while memcached is
        stopped or masked, the rollback script first brings it back, then lifts the block. It
        waits for an in-place upgrade's transient unit (C(mcfleet-upgrade.service)) to end,
        unmasks memcached and starts it on C(/etc/memcached.conf) if that passes
        C(/usr/local/sbin/memcached-check-config) and starts, otherwise on the known-good copy
        C(/var/lib/mcfleet/memcached.conf.known-good) the maintenance kept before the stop.
      - Running the script now (what the maintenance's rescue does) restores the same way.
    type: bool
    default: false
  survive_reboot:
    description:
      - For a block the host reboots under (an in-place upgrade). A reboot empties iptables
        and ends the transient timer; this also keeps a copy of the rollback script under
        C(/var/lib/mcfleet/boot) and enables a unit of the next boot that arms the timer
        again for the time left until the deadline (at once if it has passed), so a host
        whose controller died during its reboot still brings memcached back.
      - O(state=absent), and the rollback itself, remove the copy and the unit.
    type: bool
    default: false
requirements:
  - iptables (ip6tables for IPv6), iptables-restore, systemd (systemd-run, systemctl) on the host
  - conntrack when O(flush_conntrack=true)
notes:
  - Supports check mode and diff mode (rule listings before and after).
"""

EXAMPLES = r"""
- name: Block every client of the shard, lifting the block after 10 minutes at the latest
  mcfleet.fleet.shard_block:
    port: 11211
    mode: reject
    rollback_after_s: 600
    flush_conntrack: true

- name: Block only the routers, as if the host vanished
  mcfleet.fleet.shard_block:
    port: 11211
    mode: drop
    sources: ["10.89.213.31", "2001:db8::31/128"]
    rollback_after_s: 300

- name: Lift the block and disarm the timer
  mcfleet.fleet.shard_block:
    state: absent
"""

RETURN = r"""
backend:
  description: The iptables backend the block lives in.
  returned: always
  type: str
  sample: nf_tables
families:
  description: Address families that hold drill rules after the call.
  returned: always
  type: list
  elements: str
  sample: [ipv4, ipv6]
rules:
  description:
    - The rules the module holds per family, as C(iptables -S) prints them
      (jump rule, chain, chain rules).
  returned: always
  type: dict
  sample:
    ipv4:
      - >-
        -A INPUT ! -i lo -p tcp -m tcp --dport 11211 -m comment
        --comment "mcfleet.fleet.shard_block drill; lifted by its rollback timer" -j MCFLEET-DRILL
      - -N MCFLEET-DRILL
      - -A MCFLEET-DRILL -p tcp -m tcp --dport 11211 -j REJECT --reject-with tcp-reset
    ipv6: []
rollback_timer:
  description: The systemd timer that lifts the block, whether it is armed, and when it fires.
  returned: always
  type: dict
  sample: {unit: mcfleet-drill-rollback, armed: true, expires_at: "2025-01-01T12:10:00+00:00"}
conntrack_deleted:
  description: Conntrack entries deleted (0 unless O(flush_conntrack=true) and the block changed).
  returned: always
  type: int
  sample: 3
applied_at:
  description:
    - Unix time (float) right after this call changed the rules (block applied or lifted), for
      drill timelines; null when nothing changed or in check mode.
  returned: always
  type: float
  sample: 1735732800.123
record:
  description: Path of the state record (backend, timer, expiry) the rollback relies on.
  returned: always
  type: str
  sample: /run/mcfleet/mcfleet-drill.json
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter import (
    BACKENDS,
    FAMILIES,
    CommandRunner,
    converge,
    detect_backend,
    family_tables,
    netns_prefix,
    plan_chain,
    validate_netns,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.shard_block import (
    DEFAULT_CHAIN,
    DEFAULT_STATE_DIR,
    MODES,
    DrillPaths,
    ShardBlockError,
    SystemdRollbackTimer,
    boot_arm_script,
    boot_unit,
    delete_conntrack_entries,
    load_record,
    make_record,
    rollback_script,
    validate_chain,
    validate_request,
    validate_rollback_after,
    write_private_file,
)

ARGUMENT_SPEC = {
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "port": {"type": "int", "default": 11211},
    "mode": {"type": "str", "choices": list(MODES), "default": "reject"},
    "sources": {"type": "list", "elements": "str", "default": []},
    "rollback_after_s": {"type": "int"},
    "flush_conntrack": {"type": "bool", "default": False},
    "chain": {"type": "str", "default": DEFAULT_CHAIN},
    "netns": {"type": "str"},
    "state_dir": {"type": "path", "default": DEFAULT_STATE_DIR},
    "backend": {"type": "str", "choices": ["auto", *BACKENDS], "default": "auto"},
    "restore_memcached": {"type": "bool", "default": False},
    "survive_reboot": {"type": "bool", "default": False},
}


def listing_text(listings):
    return "".join(f"{family}: {line}\n" for family in FAMILIES for line in listings.get(family, []))


def desired(request, family):
    """(chain rules, jump) for one family; (None, None) where the family holds no block."""
    rules = request.chain_lines(family)
    return (rules, request.jump_line()) if rules else (None, None)


class ShardBlockModule:
    def __init__(self, module):
        self.module = module
        params = module.params
        # Bad input fails before the host is even looked at.
        validate_netns(params["netns"])
        validate_chain(params["chain"])
        self.request = None
        if params["state"] == "present":
            validate_rollback_after(params["rollback_after_s"])
            self.request = validate_request(
                params["port"], params["mode"], params["sources"], params["chain"]
            )
        self.runner = CommandRunner(self._run, netns_prefix(params["netns"]))
        self.paths = DrillPaths(params["state_dir"], params["chain"], params["netns"])
        systemctl = module.get_bin_path("systemctl")
        systemd_run = module.get_bin_path("systemd-run")
        if not (systemctl and systemd_run):
            raise ShardBlockError("systemd-run/systemctl not found: the rollback timer needs systemd")
        # systemd is reached outside the namespace; the rollback script enters it itself.
        self.timer = SystemdRollbackTimer(CommandRunner(self._run), systemd_run, systemctl)
        self.record = load_record(self.paths)
        # Lift with the backend that built the block, even if the default changed since.
        if self.record:
            self.backend = self.record["backend"]
        elif params["backend"] != "auto":
            self.backend = params["backend"]
        else:
            self.backend = detect_backend(self.runner)
        self.tables = family_tables(self.runner, self.backend, module.get_bin_path)

    def _run(self, argv, data=None):
        return self.module.run_command(argv, data=data, binary_data=data is not None)

    def read(self):
        """Each usable family's whole filter table."""
        return {family: table.read() for family, table in self.tables.items() if table}

    def listings(self, rulesets):
        return {
            family: rulesets[family].listing(self.paths.chain) if family in rulesets else []
            for family in FAMILIES
        }

    def timer_facts(self, armed):
        record = load_record(self.paths) if armed else None
        return {
            "unit": self.paths.timer_unit,
            "armed": armed,
            "expires_at": record.get("expires_at") if record else None,
        }

    def result(self, changed, listings, armed, before=None, conntrack_deleted=0, applied_at=None):
        result = {
            "changed": changed,
            "applied_at": applied_at,
            "backend": self.backend,
            "families": [family for family in FAMILIES if listings.get(family)],
            "rules": {family: listings.get(family, []) for family in FAMILIES},
            "rollback_timer": self.timer_facts(armed),
            "conntrack_deleted": conntrack_deleted,
            "record": self.paths.record,
        }
        if before is not None and self.module._diff:
            result["diff"] = {"before": listing_text(before), "after": listing_text(listings)}
        return result

    def present(self):
        params = self.module.params
        request = self.request
        missing = request.families() - {family for family, table in self.tables.items() if table}
        if request.sources and missing:
            raise ShardBlockError(
                f"sources include {' and '.join(sorted(missing))} addresses but the {self.backend} "
                f"iptables of {' and '.join(sorted(missing))} is missing or unusable on this host"
            )
        if not request.sources and missing:
            self.module.warn(
                f"{' and '.join(sorted(missing))} iptables is unusable here: those clients stay unblocked"
            )
        conntrack = None
        if params["flush_conntrack"]:
            conntrack = self.module.get_bin_path("conntrack")
            if not conntrack:
                raise ShardBlockError("flush_conntrack=true but the conntrack tool is not installed")

        rulesets = self.read()
        before = self.listings(rulesets)
        plans = {
            family: plan_chain(ruleset, request.chain, *desired(request, family))
            for family, ruleset in rulesets.items()
        }
        armed = self.timer.is_armed(self.paths.timer_unit)
        guarded = not params["survive_reboot"] or all(os.path.exists(p) for p in self.paths.boot_files)
        if not any(change.changed for change in plans.values()) and armed and guarded:
            return self.result(False, before, armed, before)
        if self.module.check_mode:
            planned = {family: change.after for family, change in plans.items()}
            return self.result(True, planned, True, before)

        # The rollback is in place before the first rule goes in.
        script = rollback_script(
            self.tables,
            request,
            self.paths,
            self.backend,
            restore_memcached=params["restore_memcached"],
            survive_reboot=params["survive_reboot"],
        )
        write_private_file(self.paths.script, script, 0o700)
        record = make_record(request, self.backend, self.paths, params["rollback_after_s"])
        write_private_file(self.paths.record, self.module.jsonify(record) + "\n")
        if params["survive_reboot"]:
            self.guard_reboot(script, record)
        self.timer.arm(self.paths.timer_unit, params["rollback_after_s"], self.paths.script)

        try:
            for family, ruleset in rulesets.items():
                # The block goes to the top of INPUT, above the client firewall's jump.
                converge(self.tables[family], request.chain, *desired(request, family), ruleset=ruleset)
        except ShardBlockError as error:
            # A half-applied block must not wait for the timer.
            try:
                self.remove_all()
            except ShardBlockError as cleanup_error:
                raise ShardBlockError(
                    f"{error}; removing the partial block failed too ({cleanup_error}): "
                    f"the timer {self.paths.timer_unit} will lift it"
                ) from None
            raise
        applied_at = time.time()
        deleted = 0
        if conntrack:
            deleted = delete_conntrack_entries(self.runner, conntrack, request, request.families() - missing)
        return self.result(True, self.listings(self.read()), True, before, deleted, applied_at)

    def guard_reboot(self, script, record):
        """The rollback's copy on disk and the boot unit that arms it again (survive_reboot)."""
        paths = self.paths
        write_private_file(paths.boot_script, script, 0o700)
        write_private_file(paths.boot_arm_script, boot_arm_script(paths, record["deadline"]), 0o700)
        write_private_file(paths.boot_unit_file, boot_unit(paths), 0o644)
        # Enabled the way `systemctl enable` would: the link is read at the next boot.
        os.makedirs(os.path.dirname(paths.boot_wants_link), exist_ok=True)
        if not os.path.islink(paths.boot_wants_link):
            os.symlink(paths.boot_unit_file, paths.boot_wants_link)

    def remove_all(self):
        """Delete our jumps and chain in every family, one transaction per family."""
        for table in self.tables.values():
            if table:
                converge(table, self.paths.chain)

    def absent(self):
        rulesets = self.read()
        before = self.listings(rulesets)
        armed = self.timer.is_armed(self.paths.timer_unit)
        present = any(ruleset.holds(self.paths.chain) for ruleset in rulesets.values())
        present = present or any(os.path.lexists(path) for path in self.paths.boot_files)
        if not (present or armed):
            self.forget()
            return self.result(False, before, False, before)
        if self.module.check_mode:
            return self.result(True, {}, False, before)
        # Rules first: if removal fails, the armed timer is still there to retry it.
        self.remove_all()
        applied_at = time.time()
        self.timer.disarm(self.paths.timer_unit)
        self.forget()
        return self.result(True, self.listings(self.read()), False, before, applied_at=applied_at)

    def forget(self):
        if self.module.check_mode:
            return
        for path in (self.paths.record, self.paths.script, *self.paths.boot_files):
            if os.path.lexists(path):
                os.unlink(path)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("state", "present", ["rollback_after_s"])],
        supports_check_mode=True,
    )
    try:
        shard_block = ShardBlockModule(module)
        result = shard_block.present() if module.params["state"] == "present" else shard_block.absent()
    except (ShardBlockError, OSError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
