"""From the current table to the desired chain and jump: one iptables-restore transaction."""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter.ordering import (
    chain_role,
    insert_position,
    jump_in_place,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter.rules import (
    HOOK,
    delete_command,
    rule_target,
    same_rules,
    split_rule,
)


@dataclass
class ChainPlan:
    """What turns one family's table into the desired state.

    `commands` are iptables-restore(8) lines for the filter table (empty: nothing to do);
    `before` and `after` are our part of the table (jumps, `-N chain`, chain rules).
    """

    chain: str
    commands: list = field(default_factory=list)
    before: list = field(default_factory=list)
    after: list = field(default_factory=list)

    @property
    def changed(self):
        return bool(self.commands)

    def script(self):
        """Input for `iptables-restore --noflush`: applied as one transaction, or not at all."""
        return "\n".join(["*filter", *self.commands, "COMMIT", ""]) if self.commands else ""


def plan_chain(ruleset, chain, desired_rules=None, desired_jump=None, hook=HOOK):
    """Plan `chain` with `desired_rules` (`-A chain ...` lines) reached by `desired_jump`.

    `desired_rules` None removes our jumps and the chain, and nothing else. Otherwise the
    chain is rewritten only when its rules differ. A jump that is the desired rule and sits
    where the ordering contract wants it (ordering.py) is kept and every other jump to the
    chain deleted; without one, every jump to the chain is deleted and the desired jump
    inserted at the contract's position. All of it is one transaction.
    """
    before = ruleset.listing(chain, hook)
    current_rules = ruleset.rules(chain)
    jumps = ruleset.jumps(chain, hook)
    commands = []
    if desired_rules is None:
        commands += [delete_command(jump) for jump in jumps]
        if current_rules is not None:
            commands += [f"-F {chain}", f"-X {chain}"]
        return ChainPlan(chain, commands, before, [])

    if current_rules is None or not same_rules(current_rules, desired_rules):
        # Declaring an existing chain in --noflush mode empties it; -F makes that explicit.
        commands += [f":{chain} - [0:0]", f"-F {chain}", *desired_rules]
    role = chain_role(chain)
    hook_rules = ruleset.hook_rules(hook)
    ours = [index for index, line in enumerate(hook_rules) if rule_target(line) == chain]
    wanted = split_rule(desired_jump)
    matching = [index for index in ours if split_rule(hook_rules[index]) == wanted]
    keep = None
    if matching:
        # Deleting by specification removes the first identical rule, so of identical jumps
        # the last one is what survives: that is the one that may be kept.
        candidate = matching[-1]
        remaining = [line for index, line in enumerate(hook_rules) if index not in ours or index == candidate]
        position = candidate - sum(1 for index in ours if index < candidate)
        if jump_in_place(remaining, position, role):
            keep = candidate
    commands += [delete_command(hook_rules[index]) for index in ours if index != keep]
    if keep is None:
        remaining = [line for index, line in enumerate(hook_rules) if index not in ours]
        position = insert_position(remaining, role)
        commands.append(f"-I {hook} {position}" + desired_jump.lstrip()[len(f"-A {hook}") :])
    return ChainPlan(chain, commands, before, [desired_jump, f"-N {chain}", *desired_rules])
