"""The memcached role's firewall plan: rules in iptables' own listing form, minimal changes."""

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils.client_firewall import (
    FirewallSpecError,
    canonical_network,
    chain_rules,
    client_rules,
    jump_rule,
    jumps_to,
    plan,
)

CHAIN = "MCFLEET-MEMCACHED"
JUMP = jump_rule(CHAIN, [11211, 11214], "mcfleet: only memcached clients reach memcached")
RULES = client_rules(CHAIN, ["10.89.214.16/29", "10.1.2.3"])

# What `iptables -S` printed on bullseye, bookworm and trixie after applying RULES and JUMP.
LISTED_CHAIN = """-N MCFLEET-MEMCACHED
-A MCFLEET-MEMCACHED -i lo -j ACCEPT
-A MCFLEET-MEMCACHED -s 10.89.214.16/29 -j ACCEPT
-A MCFLEET-MEMCACHED -s 10.1.2.3/32 -j ACCEPT
-A MCFLEET-MEMCACHED -p tcp -j REJECT --reject-with tcp-reset
"""
LISTED_INPUT = """-P INPUT ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -p tcp -m multiport --dports 11211,11214 -m comment --comment \
"mcfleet: only memcached clients reach memcached" -j MCFLEET-MEMCACHED
"""


def test_rules_are_written_as_iptables_lists_them():
    assert chain_rules(LISTED_CHAIN, CHAIN) == RULES
    assert jumps_to(LISTED_INPUT, CHAIN) == [JUMP]


def test_networks_are_canonicalised_and_bad_ones_refused():
    assert canonical_network("10.89.213.7/24") == "10.89.213.0/24"
    assert canonical_network("192.0.2.1") == "192.0.2.1/32"
    assert canonical_network("2001:db8::7") == "2001:db8::7/128"
    for bad in ("10.0.0.0/33", "not-a-network", "2001:db8::/129", "300.1.1.1"):
        with pytest.raises(FirewallSpecError):
            canonical_network(bad)


def test_jump_matches_only_memcached_ports():
    assert "--dports 11211 " in jump_rule(CHAIN, [11211])
    with pytest.raises(FirewallSpecError):
        jump_rule(CHAIN, [])
    with pytest.raises(FirewallSpecError):
        jump_rule(CHAIN, [70000])


def test_matching_state_needs_no_change():
    change = plan(CHAIN, chain_rules(LISTED_CHAIN, CHAIN), jumps_to(LISTED_INPUT, CHAIN), RULES, JUMP)
    assert change["changed"] is False
    assert change["script"] == ""


def test_fresh_host_gets_chain_and_one_jump_at_the_top():
    change = plan(CHAIN, None, [], RULES, JUMP)
    assert change["changed"] is True
    lines = change["script"].splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"
    assert f":{CHAIN} - [0:0]" in lines
    assert lines[-2].startswith("-I INPUT 1 -p tcp -m multiport --dports 11211,11214")
    assert lines.index(RULES[-1]) < lines.index(lines[-2]), "chain must be built before the jump to it"


def test_a_new_client_network_is_accepted_before_the_reject():
    wanted = client_rules(CHAIN, ["10.89.214.16/29", "10.1.2.3", "10.9.0.0/16"])
    change = plan(CHAIN, chain_rules(LISTED_CHAIN, CHAIN), [JUMP], wanted, JUMP)
    lines = change["script"].splitlines()
    assert change["changed"] is True
    assert "-I INPUT 1" not in change["script"], "the existing jump stays"
    assert lines.index(f"-A {CHAIN} -s 10.9.0.0/16 -j ACCEPT") < lines.index(wanted[-1])


def test_stale_and_duplicate_jumps_are_removed():
    old_jump = jump_rule(CHAIN, [11211])
    change = plan(CHAIN, RULES, [old_jump, JUMP, JUMP], RULES, JUMP)
    lines = change["script"].splitlines()
    assert "-D" + old_jump[2:] in lines
    assert lines.count("-D" + JUMP[2:]) == 1
    assert not any(line.startswith(":") for line in lines), "an unchanged chain is not rewritten"


def test_absent_removes_jumps_then_chain_and_nothing_else():
    change = plan(CHAIN, RULES, [JUMP], None, None)
    assert change["script"].splitlines()[1:-1] == ["-D" + JUMP[2:], f"-F {CHAIN}", f"-X {CHAIN}"]
    assert plan(CHAIN, None, [], None, None)["changed"] is False
