"""mcfleet's netfilter layer: every iptables/ip6tables read and write of the collection.

* command.py   CommandRunner (argv behind a prefix such as `ip netns exec NS`), NetfilterError
* rules.py     `iptables -S` parsing (Ruleset), rule rendering, chain-name and address validation
* ordering.py  THE ORDERING CONTRACT: maintenance/drill jumps before the client firewall's
* plan.py      plan_chain(): current table -> one iptables-restore --noflush transaction
* backend.py   backend detection (iptables -V), per-family Table, converge()

The drill's shard block (shard_block) and the memcached role's client firewall
(client_firewall) both go through this package, so they agree on how rules are read,
compared and ordered.
"""

from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter.backend import (
    BACKENDS,
    Table,
    converge,
    detect_backend,
    family_tables,
    parse_backend,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter.command import (
    CommandResult,
    CommandRunner,
    NetfilterError,
    netns_prefix,
    validate_netns,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter.ordering import (
    FIREWALL,
    MAINTENANCE,
    chain_role,
    insert_position,
    jump_in_place,
    order_violations,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter.plan import ChainPlan, plan_chain
from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter.rules import (
    CHAIN_MAX_LENGTH,
    DRILL_CHAIN_PATTERN,
    FAMILIES,
    HOOK,
    MAINTENANCE_CHAIN_PATTERN,
    Ruleset,
    iptables_address,
    is_maintenance_chain,
    network_family,
    parse_network,
    parse_ruleset,
    render_rule,
    rule_target,
    split_rule,
    validate_chain_name,
)

__all__ = [
    "BACKENDS",
    "CHAIN_MAX_LENGTH",
    "DRILL_CHAIN_PATTERN",
    "FAMILIES",
    "FIREWALL",
    "HOOK",
    "MAINTENANCE",
    "MAINTENANCE_CHAIN_PATTERN",
    "ChainPlan",
    "CommandResult",
    "CommandRunner",
    "NetfilterError",
    "Ruleset",
    "Table",
    "chain_role",
    "converge",
    "detect_backend",
    "family_tables",
    "insert_position",
    "iptables_address",
    "is_maintenance_chain",
    "jump_in_place",
    "netns_prefix",
    "network_family",
    "order_violations",
    "parse_backend",
    "parse_network",
    "parse_ruleset",
    "plan_chain",
    "render_rule",
    "rule_target",
    "split_rule",
    "validate_chain_name",
    "validate_netns",
]
