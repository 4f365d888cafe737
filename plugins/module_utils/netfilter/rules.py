"""Rules in the form `iptables -S` prints them: parsing, rendering, chain names, addresses.

`iptables -S` (see iptables(8), "-S, --list-rules") prints a table as the commands that
would rebuild it: `-P CHAIN POLICY`, `-N CHAIN`, `-A CHAIN rule...`. iptables-restore(8)
reads the same rule syntax, so one form serves for reading, comparing and writing.
The form is the same on the nf_tables and legacy backends of iptables 1.8.7 (bullseye)
to 1.8.11 (trixie). Rules are compared token by token (shlex), so quoting does not matter.
"""

from __future__ import annotations

import ipaddress
import re
import shlex

from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter.command import NetfilterError

FAMILIES = ("ipv4", "ipv6")
HOOK = "INPUT"
# iptables refuses chain names longer than 28 characters (XT_EXTENSION_MAXNAMELEN - 1 = 28
# in the legacy backend; the nft backend keeps the same limit for compatibility).
CHAIN_MAX_LENGTH = 28
# Letters, digits, '_', '.', '-'; first a letter or digit: never an option ('-x') or '!'.
_CHAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
BUILTIN_CHAINS = frozenset({"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"})
STANDARD_TARGETS = frozenset({"ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "LOG", "CONTINUE"})
# Maintenance chains: a failover drill's block (MCFLEET-DRILL...) and a future maintenance
# window's (MCFLEET-MAINT...). The ordering contract (ordering.py) keys on these names.
DRILL_CHAIN_PATTERN = re.compile(r"^MCFLEET-DRILL(-[A-Z0-9]+)*$")
MAINTENANCE_CHAIN_PATTERN = re.compile(r"^MCFLEET-(DRILL|MAINT)(-[A-Z0-9]+)*$")


def validate_chain_name(chain, field="chain", pattern=None, expected=None):
    """Return `chain` if iptables accepts it as a user chain (and it matches `pattern`).

    The error names the field and the value; `expected` describes `pattern` for it.
    """
    problem = None
    if not isinstance(chain, str) or not chain:
        problem = "must be a non-empty string"
    elif len(chain) > CHAIN_MAX_LENGTH:
        problem = f"is longer than the {CHAIN_MAX_LENGTH} characters iptables allows"
    elif chain in BUILTIN_CHAINS or chain in STANDARD_TARGETS:
        problem = "is a built-in chain or target, not a chain of our own"
    elif not _CHAIN_NAME.match(chain):
        problem = "may hold only letters, digits, '_', '.' and '-', and must start with a letter or digit"
    elif pattern is not None and not pattern.match(chain):
        problem = f"must be {expected or pattern.pattern}"
    if problem:
        raise_error(f"{field}={chain!r}: {problem}")
    return chain


def is_maintenance_chain(chain):
    return bool(MAINTENANCE_CHAIN_PATTERN.match(chain or ""))


def raise_error(message):
    raise NetfilterError(message)


# --- addresses ----------------------------------------------------------------------------


def parse_network(text, field, strict=False, forbid_loopback=False):
    """An IPv4 or IPv6 address or CIDR network; errors name the field and the value.

    strict=False accepts host bits (10.1.2.3/24 means 10.1.2.0/24), as iptables does.
    """
    try:
        network = ipaddress.ip_network(str(text).strip(), strict=strict)
    except ValueError as error:
        # Chained, so the filter mcfleet.fleet.network_problem can show ipaddress's reason alone.
        problem = f"{field}={text!r}: not an IPv4 or IPv6 address or CIDR network ({error})"
        raise NetfilterError(problem) from error
    if forbid_loopback and network.is_loopback:
        raise_error(f"{field}={text!r}: loopback is never blocked")
    return network


def network_family(network):
    return "ipv4" if network.version == 4 else "ipv6"


def iptables_address(network):
    """A network as `iptables -S` prints it: always with a prefix (10.0.0.7/32, fd00::7/128)."""
    return f"{network.network_address}/{network.prefixlen}"


# --- rules ----------------------------------------------------------------------------------


def split_rule(line):
    return tuple(shlex.split(line))


def render_rule(command, chain, tokens):
    """One rule as `iptables -S` prints it (and iptables-restore reads it)."""
    words = [f'"{token}"' if (" " in token or not token) else token for token in tokens]
    return " ".join([command, chain, *words])


def same_rules(left, right):
    return [split_rule(line) for line in left] == [split_rule(line) for line in right]


def rule_target(line):
    """The chain or target a rule jumps to (its last `-j X`), or None."""
    tokens = split_rule(line)
    for index in range(len(tokens) - 2, -1, -1):
        if tokens[index] in ("-j", "--jump"):
            return tokens[index + 1]
    return None


def delete_command(line):
    """`-A CHAIN rule` -> `-D CHAIN rule` (delete by specification, iptables(8))."""
    tokens = split_rule(line)
    if tokens[:1] != ("-A",):
        raise ValueError(f"not an -A rule: {line!r}")
    return "-D" + line.lstrip()[2:]


class Ruleset:
    """One family's filter table as `iptables -S` listed it."""

    def __init__(self, policies=None, chains=None):
        self.policies = dict(policies or {})
        # chain -> its `-A` lines in order; user chains and built-ins alike.
        self.chains = dict(chains or {})

    def exists(self, chain):
        return chain in self.chains

    def rules(self, chain):
        """The chain's `-A` lines, or None when the chain does not exist."""
        return list(self.chains[chain]) if chain in self.chains else None

    def hook_rules(self, hook=HOOK):
        return list(self.chains.get(hook, []))

    def jumps(self, chain, hook=HOOK):
        """Rules of `hook` that jump to `chain`, in order."""
        return [line for line in self.hook_rules(hook) if rule_target(line) == chain]

    def holds(self, chain, hook=HOOK):
        return self.exists(chain) or bool(self.jumps(chain, hook))

    def listing(self, chain, hook=HOOK):
        """Our part of the table: jumps to `chain`, then `-N chain` and its rules."""
        lines = self.jumps(chain, hook)
        if self.exists(chain):
            lines += [f"-N {chain}", *self.chains[chain]]
        return lines


def parse_ruleset(text):
    """Parse `iptables -S` (whole filter table) output into a Ruleset."""
    ruleset = Ruleset()
    for line in text.splitlines():
        tokens = split_rule(line)
        if len(tokens) < 2:
            continue
        command, chain = tokens[0], tokens[1]
        if command == "-P":
            ruleset.policies[chain] = tokens[2] if len(tokens) > 2 else None
            ruleset.chains.setdefault(chain, [])
        elif command == "-N":
            ruleset.chains.setdefault(chain, [])
        elif command == "-A":
            ruleset.chains.setdefault(chain, []).append(line.strip())
    return ruleset
