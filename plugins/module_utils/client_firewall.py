"""The memcached firewall as data: which iptables/ip6tables rules admit clients.

Plain Python (no Ansible at import time) so pytest can check it without a host. Reading,
comparing, ordering and applying rules is the netfilter package's job; this file only says
what the client firewall wants in each family:

* a chain (default MCFLEET-MEMCACHED) that accepts loopback and the client networks of
  that family, and rejects the rest of TCP;
* one commented jump in INPUT that matches only the memcached TCP ports, placed after any
  drill/maintenance jump (the ordering contract, netfilter/ordering.py).
"""

import re

from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter import (
    FAMILIES,
    NetfilterError,
    Ruleset,
    iptables_address,
    is_maintenance_chain,
    network_family,
    parse_network,
    parse_ruleset,
    plan_chain,
    validate_chain_name,
)

DEFAULT_CHAIN = "MCFLEET-MEMCACHED"
DEFAULT_COMMENT = "mcfleet: only memcached clients reach memcached"
# reject_with choices and what each family's REJECT calls them (iptables-extensions(8), REJECT).
REJECT_WITH = {
    "tcp-reset": {"ipv4": "tcp-reset", "ipv6": "tcp-reset"},
    "icmp-port-unreachable": {"ipv4": "icmp-port-unreachable", "ipv6": "icmp6-port-unreachable"},
    "icmp-admin-prohibited": {"ipv4": "icmp-admin-prohibited", "ipv6": "icmp6-adm-prohibited"},
}

# One error type for every refusal, whether of the spec or of the host.
FirewallSpecError = NetfilterError


def canonical_network(text, field="client_networks"):
    """An IPv4 or IPv6 network as `iptables -S` prints it (`10.0.0.0/8`, `2001:db8::7/128`)."""
    return iptables_address(parse_network(text, field))


def networks_by_family(client_networks, field="client_networks"):
    """{family: [canonical network, ...]} in the given order, duplicates left out."""
    networks = {family: [] for family in FAMILIES}
    for index, text in enumerate(client_networks):
        network = parse_network(text, f"{field}[{index}]")
        source = iptables_address(network)
        if source not in networks[network_family(network)]:
            networks[network_family(network)].append(source)
    return networks


def validate_ports(ports):
    if not ports:
        raise FirewallSpecError("ports=[]: at least one memcached port is needed")
    for port in ports:
        if isinstance(port, bool) or not 1 <= int(port) <= 65535:
            raise FirewallSpecError(f"ports has {port!r}, which is outside 1-65535")
    return sorted({int(port) for port in ports})


def validate_chain(chain):
    validate_chain_name(chain, "chain")
    if is_maintenance_chain(chain):
        # The ordering contract would rank such a chain above the firewall itself.
        raise FirewallSpecError(
            f"chain={chain!r}: MCFLEET-DRILL* and MCFLEET-MAINT* are maintenance chains, "
            "not the client firewall's"
        )
    return chain


def client_rules(chain, client_networks, allow_loopback=True, reject_with="tcp-reset", family="ipv4"):
    """The chain's rules in one family: accept loopback and that family's networks, reject the rest."""
    rules = []
    if allow_loopback:
        rules.append(f"-A {chain} -i lo -j ACCEPT")
    rules += [f"-A {chain} -s {source} -j ACCEPT" for source in networks_by_family(client_networks)[family]]
    # tcp-reset makes a refused client fail at once instead of waiting for a timeout.
    protocol = "-p tcp " if reject_with == "tcp-reset" else ""
    rules.append(f"-A {chain} {protocol}-j REJECT --reject-with {REJECT_WITH[reject_with][family]}")
    return rules


# What a comment may hold: iptables-save writes it back quoted, and a quote, backslash or
# newline in it would not read back as the rule that was written (the module would plan the
# same change on every run).
COMMENT_PATTERN = re.compile(r"^[A-Za-z0-9 ,.:;()_/+=@-]{1,256}$")


def validate_comment(comment):
    if not isinstance(comment, str) or not COMMENT_PATTERN.match(comment):
        raise FirewallSpecError(
            f"comment={comment!r}: at most 256 letters, digits, spaces and , . : ; ( ) _ / + = @ - "
            "(no quotes or backslashes: iptables would not list it back as written)"
        )
    return comment


def jump_rule(chain, ports, comment=DEFAULT_COMMENT):
    """The one INPUT rule that sends memcached traffic (and only it) into the chain."""
    comment = validate_comment(comment)
    port_list = ",".join(str(port) for port in validate_ports(ports))
    return f'-A INPUT -p tcp -m multiport --dports {port_list} -m comment --comment "{comment}" -j {chain}'


def desired_state(params):
    """{family: (rules, jump)} for state=present, {family: (None, None)} for absent.

    Every field is checked here, before the host is looked at; errors name field and value.
    """
    chain = validate_chain(params["chain"])
    if params["state"] != "present":
        return {family: (None, None) for family in FAMILIES}
    networks_by_family(params["client_networks"])
    jump = jump_rule(chain, params["ports"], params["comment"])
    return {
        family: (
            client_rules(
                chain, params["client_networks"], params["allow_loopback"], params["reject_with"], family
            ),
            jump,
        )
        for family in FAMILIES
    }


# --- plans from pieces of `iptables -S` output (kept for callers that hold only those) ------


def chain_rules(listing, chain):
    """Rules of `chain` from `iptables -S [CHAIN]` output (the `-N` line left out)."""
    return parse_ruleset(listing).rules(chain) or []


def jumps_to(listing, chain):
    """INPUT rules (from `iptables -S [INPUT]` output) whose target is `chain`."""
    return parse_ruleset(listing).jumps(chain)


def plan(chain, current_rules, current_jumps, desired_rules=None, desired_jump=None, input_rules=None):
    """netfilter.plan_chain() for a table given in pieces; `input_rules` defaults to the jumps.

    Returns a dict: `changed`, `script` (for `iptables-restore --noflush`), `before`, `after`.
    """
    chains = {"INPUT": list(current_jumps if input_rules is None else input_rules)}
    if current_rules is not None:
        chains[chain] = list(current_rules)
    change = plan_chain(Ruleset(chains=chains), chain, desired_rules, desired_jump)
    return {
        "changed": change.changed,
        "script": change.script(),
        "before": change.before,
        "after": change.after,
    }
