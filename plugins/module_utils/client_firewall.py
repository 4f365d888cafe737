"""The memcached firewall as data: which iptables rules admit clients, and how to get there.

Plain Python (no Ansible at import time) so pytest can check it without a host.
Rules are compared in the form `iptables -S` prints them, which is the same on the
nf_tables and legacy backends of iptables 1.8.7 (bullseye) to 1.8.11 (trixie).
"""

import ipaddress
import shlex

DEFAULT_CHAIN = "MCFLEET-MEMCACHED"
DEFAULT_COMMENT = "mcfleet: only memcached clients reach memcached"


class FirewallSpecError(ValueError):
    """A client network, port or chain name the firewall cannot express."""


def canonical_network(text):
    """Return an IPv4 network the way `iptables -S` prints it (`10.0.0.0/8`, `10.0.0.7/32`)."""
    try:
        network = ipaddress.IPv4Network(str(text).strip(), strict=False)
    except ValueError as error:
        raise FirewallSpecError(f"client network {text!r} is not an IPv4 address or CIDR: {error}") from None
    return str(network) if "/" in str(network) else f"{network}/32"


def validate_ports(ports):
    if not ports:
        raise FirewallSpecError("at least one memcached port is needed")
    for port in ports:
        if not 1 <= int(port) <= 65535:
            raise FirewallSpecError(f"port {port!r} is outside 1-65535")
    return sorted({int(port) for port in ports})


def validate_chain(chain):
    # iptables limits chain names to 28 characters; a space or quote would break `-S` parsing.
    if not chain or len(chain) > 28 or any(char.isspace() or char in "'\"!" for char in chain):
        raise FirewallSpecError(f"chain name {chain!r} is not a valid iptables chain name")
    return chain


def client_rules(chain, client_networks, allow_loopback=True, reject_with="tcp-reset"):
    """The chain's rules in order: accept loopback and each client network, reject the rest."""
    rules = []
    if allow_loopback:
        rules.append(f"-A {chain} -i lo -j ACCEPT")
    seen = set()
    for network in client_networks:
        source = canonical_network(network)
        if source not in seen:
            seen.add(source)
            rules.append(f"-A {chain} -s {source} -j ACCEPT")
    # tcp-reset makes a refused client fail at once instead of waiting for a timeout.
    protocol = "-p tcp " if reject_with == "tcp-reset" else ""
    rules.append(f"-A {chain} {protocol}-j REJECT --reject-with {reject_with}")
    return rules


def jump_rule(chain, ports, comment=DEFAULT_COMMENT):
    """The one INPUT rule that sends memcached traffic (and only it) into the chain."""
    port_list = ",".join(str(port) for port in validate_ports(ports))
    return f'-A INPUT -p tcp -m multiport --dports {port_list} -m comment --comment "{comment}" -j {chain}'


def rule_tokens(rule):
    return tuple(shlex.split(rule))


def chain_rules(listing, chain):
    """Rules of `chain` from `iptables -S CHAIN` output (the `-N` line left out)."""
    prefix = ("-A", chain)
    return [line for line in listing.splitlines() if rule_tokens(line)[:2] == prefix]


def jumps_to(listing, chain):
    """INPUT rules (from `iptables -S INPUT`) whose target is `chain`."""
    jumps = []
    for line in listing.splitlines():
        tokens = rule_tokens(line)
        if tokens[:2] == ("-A", "INPUT") and tokens[-2:] == ("-j", chain):
            jumps.append(line)
    return jumps


def listing(chain, rules, jumps):
    """Jump rules and chain as one listing (for diffs and results); `rules` None: no chain."""
    return [*jumps, *([f"-N {chain}", *rules] if rules is not None else [])]


def plan(chain, current_rules, current_jumps, desired_rules=None, desired_jump=None):
    """Decide what turns the current state into the desired one.

    `current_rules` is None when the chain does not exist.  `desired_rules` of None means
    the firewall must be removed.  Returns a dict: `changed`, `script` (input for
    `iptables-restore --noflush`, applied as one transaction), `before` and `after`
    (rule listings for a diff).
    """
    before = listing(chain, current_rules, current_jumps)
    commands = []
    if desired_rules is None:
        commands += ["-D" + jump[2:] for jump in current_jumps]
        if current_rules is not None:
            commands += [f"-F {chain}", f"-X {chain}"]
        after = []
    else:
        wanted = [rule_tokens(rule) for rule in desired_rules]
        if current_rules is None or [rule_tokens(rule) for rule in current_rules] != wanted:
            # Declaring an existing chain in --noflush mode empties it; -F makes that explicit.
            commands += [f":{chain} - [0:0]", f"-F {chain}", *desired_rules]
        kept_jump = False
        for jump in current_jumps:
            if not kept_jump and rule_tokens(jump) == rule_tokens(desired_jump):
                kept_jump = True
            else:
                commands.append("-D" + jump[2:])
        if not kept_jump:
            # At the top of INPUT, so an earlier broad ACCEPT cannot bypass the chain.
            commands.append("-I INPUT 1" + desired_jump[len("-A INPUT") :])
        after = listing(chain, desired_rules, [desired_jump])
    script = "\n".join(["*filter", *commands, "COMMIT", ""]) if commands else ""
    return {"changed": bool(commands), "script": script, "before": before, "after": after}
