"""iptables of one backend (nf_tables or legacy) and one family (iptables or ip6tables).

iptables 1.8 ships two backends with the same syntax (iptables-nft(8), iptables-legacy(8));
`iptables -V` names the one the plain `iptables` command uses. Rules made with one backend
are invisible to the other, so whoever removes a block must use the backend that made it.
"""

from __future__ import annotations

import re
import shlex

from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter.command import NetfilterError
from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter.plan import plan_chain
from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter.rules import (
    FAMILIES,
    HOOK,
    parse_ruleset,
)

BACKENDS = ("nf_tables", "legacy")
_BACKEND_SUFFIX = {"nf_tables": "nft", "legacy": "legacy"}
_FAMILY_STEM = {"ipv4": "iptables", "ipv6": "ip6tables"}
CONVERGE_ATTEMPTS = 3


def parse_backend(version_output):
    """`iptables -V` prints e.g. 'iptables v1.8.9 (nf_tables)'; before 1.8 only legacy existed."""
    if "(nf_tables)" in version_output:
        return "nf_tables"
    if "(legacy)" in version_output or re.search(r"iptables v1\.[0-7]\.", version_output):
        return "legacy"
    raise NetfilterError(f"cannot tell the iptables backend from {version_output.strip()!r}")


def detect_backend(runner):
    result = runner.checked(["iptables", "-V"])
    return parse_backend(result.stdout + result.stderr)


class Table:
    """The filter table of one family, through one backend's iptables and iptables-restore."""

    def __init__(self, runner, family, binary, restore_binary, backend=None):
        self.runner = runner
        self.family = family
        self.binary = binary
        self.restore_binary = restore_binary
        self.backend = backend

    def available(self):
        return self.runner([self.binary, "-w", "-S", HOOK]).rc == 0

    def read(self):
        """The whole filter table, in one `-S` listing (one consistent snapshot)."""
        return parse_ruleset(self.runner.checked([self.binary, "-w", "-S"]).stdout)

    def restore(self, script):
        """Apply an iptables-restore script without flushing anything else (--noflush)."""
        self.runner.checked([self.restore_binary, "-w", "--noflush"], data=script)

    def removal_shell_lines(self, chain, jump_tokens, hook=HOOK):
        """POSIX sh lines that remove our jump and chain with no Python (for a rollback script).

        The same steps as plan_chain(desired_rules=None); sets failed=1 if the chain survives.
        """
        run = shlex.join(self.runner.argv([self.binary, "-w"]))
        jump = shlex.join(jump_tokens)
        quoted = shlex.quote(chain)
        return [
            f"# {self.family}",
            # Bounded loop: a duplicate jump is removed too, and -D failing ends it.
            f"for attempt in 1 2 3 4 5 6 7 8; do {run} -D {hook} {jump} 2>/dev/null || break; done",
            f"{run} -F {quoted} 2>/dev/null",
            f"{run} -X {quoted} 2>/dev/null",
            f"if {run} -S {quoted} >/dev/null 2>&1; then failed=1; fi",
        ]


def family_tables(runner, backend, which, required=("ipv4",)):
    """The Table of each family for this backend; None where the binaries are missing or unusable.

    `which(name)` finds a binary (AnsibleModule.get_bin_path); iptables-nft/iptables-legacy
    are preferred so the backend is the one asked for, whatever `iptables` points at.
    """
    if backend not in BACKENDS:
        raise NetfilterError(f"backend={backend!r}: must be one of {', '.join(BACKENDS)}")
    suffix = _BACKEND_SUFFIX[backend]
    tables = {}
    for family in FAMILIES:
        stem = _FAMILY_STEM[family]
        binary = which(f"{stem}-{suffix}") or which(stem)
        restore = which(f"{stem}-{suffix}-restore") or which(f"{stem}-restore")
        table = Table(runner, family, binary, restore, backend) if binary and restore else None
        tables[family] = table if table and table.available() else None
    for family in required:
        if tables[family] is None:
            raise NetfilterError(f"{_FAMILY_STEM[family]} ({backend}) is missing or unusable on this host")
    return tables


def converge(table, chain, desired_rules=None, desired_jump=None, ruleset=None, check_mode=False):
    """Plan from the table's current state and apply; returns (first plan, final listing).

    After applying, the table is read again and planned again: a jump another process put
    in between (e.g. a block going in while the firewall converges) is put back in order,
    up to CONVERGE_ATTEMPTS transactions in all.
    """
    ruleset = table.read() if ruleset is None else ruleset
    first = plan_chain(ruleset, chain, desired_rules, desired_jump)
    if not first.changed:
        return first, first.before
    if check_mode:
        return first, first.after
    change = first
    for _attempt in range(CONVERGE_ATTEMPTS):
        table.restore(change.script())
        change = plan_chain(table.read(), chain, desired_rules, desired_jump)
        if not change.changed:
            return first, change.before
    raise NetfilterError(
        f"{table.binary}: {chain} did not reach the desired state after {CONVERGE_ATTEMPTS} "
        f"transactions (still planned: {change.commands})"
    )
