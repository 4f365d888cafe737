"""THE ORDERING CONTRACT of mcfleet's jumps in INPUT.

Two kinds of mcfleet chains hang off INPUT:

* maintenance chains (MCFLEET-DRILL*, MCFLEET-MAINT*): temporary blocks, e.g. a failover
  drill that makes a shard refuse its routers (the routers then send traffic to the gutter
  pool, see the mcrouter wiki's "Failover" page);
* the client firewall chain (MCFLEET-MEMCACHED): ACCEPTs the routers' networks.

iptables evaluates INPUT top to bottom and an ACCEPT ends the evaluation (iptables(8),
"TARGETS"), so a client firewall jump above a maintenance jump would ACCEPT the very
routers the block must refuse. The contract: in every family, every maintenance jump is
evaluated before every client firewall jump, whoever converged last. Hence:

* a maintenance jump is in place only when nothing but maintenance jumps precedes it;
  otherwise it is (re)inserted at position 1;
* a client firewall jump is in place only when no maintenance jump follows it; otherwise
  it is (re)inserted right after the last maintenance jump (position 1 when there is none),
  which also moves a jump found above an active block below it.

Both the drill (shard_block) and the client firewall plan through plan.plan_chain(), which
applies these two rules, and converge through backend.converge(), which re-reads INPUT after
applying and fixes the order again if a concurrent change broke it.
"""

from __future__ import annotations

from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter.rules import (
    is_maintenance_chain,
    rule_target,
)

MAINTENANCE = "maintenance"
FIREWALL = "firewall"


def chain_role(chain):
    """MAINTENANCE for MCFLEET-DRILL*/MCFLEET-MAINT* chains, FIREWALL for every other chain."""
    return MAINTENANCE if is_maintenance_chain(chain) else FIREWALL


def is_maintenance_jump(line):
    return is_maintenance_chain(rule_target(line))


def jump_in_place(hook_rules, index, role):
    """Whether the jump at `index` of the hook's rules sits where the contract wants it."""
    if role == MAINTENANCE:
        return all(is_maintenance_jump(line) for line in hook_rules[:index])
    return not any(is_maintenance_jump(line) for line in hook_rules[index + 1 :])


def insert_position(hook_rules, role):
    """1-based `-I` position for a new jump of `role` into the hook's rules (ours removed)."""
    if role == MAINTENANCE:
        return 1
    last = max((index for index, line in enumerate(hook_rules) if is_maintenance_jump(line)), default=-1)
    return last + 2


def order_violations(hook_rules, firewall_chains):
    """(maintenance jump, firewall jump) pairs where the firewall jump comes first: must be empty."""
    violations = []
    for index, line in enumerate(hook_rules):
        if rule_target(line) in firewall_chains:
            violations += [(later, line) for later in hook_rules[index + 1 :] if is_maintenance_jump(later)]
    return violations
