"""The netfilter package without a host: parsing, names, addresses, planning and THE ORDERING CONTRACT.

The contract: in INPUT, every maintenance/drill jump (MCFLEET-DRILL*, MCFLEET-MAINT*) is
evaluated before the client firewall's jump (MCFLEET-MEMCACHED), whoever converges last.
A small in-memory iptables-restore (FakeTable) applies the plans, so sequences of converges
can be checked without root; tests/unit/plugins/module_utils/test_netfilter_namespaces.py
does the same with real iptables and real traffic.
"""

from __future__ import annotations

import copy
import itertools

import pytest
import yaml
from ansible_collections.mcfleet.fleet.plugins.module_utils import client_firewall
from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter import (
    FIREWALL,
    MAINTENANCE,
    CommandRunner,
    NetfilterError,
    Ruleset,
    Table,
    chain_role,
    converge,
    insert_position,
    order_violations,
    parse_backend,
    parse_network,
    parse_ruleset,
    plan_chain,
    render_rule,
    split_rule,
    validate_chain_name,
    validate_netns,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.shard_block import (
    rollback_script,
    validate_request,
)
from ansible_collections.mcfleet.fleet.plugins.modules import client_firewall as client_firewall_module

FIREWALL_CHAIN = "MCFLEET-MEMCACHED"
DRILL_CHAIN = "MCFLEET-DRILL"
ROUTERS = "10.89.213.0/24"


def firewall_state(ports, networks=(ROUTERS,), family="ipv4"):
    rules = client_firewall.client_rules(FIREWALL_CHAIN, list(networks), family=family)
    return rules, client_firewall.jump_rule(FIREWALL_CHAIN, ports)


def block_state(port=11211, sources=(ROUTERS,), chain=DRILL_CHAIN):
    request = validate_request(port, "reject", list(sources), chain)
    return request.chain_lines("ipv4"), request.jump_line()


class FakeTable:
    """An in-memory filter table that reads like `iptables -S` and applies restore scripts."""

    family = "ipv4"
    binary = "iptables"

    def __init__(self, listing="-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n"):
        self.ruleset = parse_ruleset(listing)
        self.scripts = []
        self.before_restore = None

    def read(self):
        return copy.deepcopy(self.ruleset)

    def restore(self, script):
        if self.before_restore:
            self.before_restore(self)
        self.scripts.append(script)
        lines = script.splitlines()
        assert lines[0] == "*filter" and lines[-1] == "COMMIT"
        chains = self.ruleset.chains
        for line in lines[1:-1]:
            tokens = split_rule(line)
            if line.startswith(":"):
                chains[line[1:].split()[0]] = []
                continue
            command, chain, rest = tokens[0], tokens[1], tokens[2:]
            if command == "-F":
                chains[chain] = []
            elif command == "-X":
                assert chains[chain] == [], "iptables refuses to delete a chain with rules"
                del chains[chain]
            elif command == "-A":
                chains[chain].append(render_rule("-A", chain, rest))
            elif command == "-I":
                chains[chain].insert(int(rest[0]) - 1, render_rule("-A", chain, rest[1:]))
            elif command == "-D":
                wanted = ("-A", chain, *rest)
                index = next(i for i, rule in enumerate(chains[chain]) if split_rule(rule) == wanted)
                del chains[chain][index]
            else:
                raise AssertionError(f"unexpected restore line {line!r}")

    def input_targets(self):
        return [split_rule(rule)[-1] for rule in self.ruleset.hook_rules()]


def converge_firewall(table, ports, networks=(ROUTERS,)):
    return converge(table, FIREWALL_CHAIN, *firewall_state(ports, networks))[0]


def converge_block(table, **kwargs):
    return converge(table, kwargs.get("chain", DRILL_CHAIN), *block_state(**kwargs))[0]


# --- parsing ------------------------------------------------------------------------------

LISTING = """-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N MCFLEET-DRILL
-N MCFLEET-MEMCACHED
-A INPUT ! -i lo -p tcp -m tcp --dport 11211 -m comment --comment "mcfleet.fleet.shard_block drill; \
lifted by its rollback timer" -j MCFLEET-DRILL
-A INPUT -p tcp -m multiport --dports 11211 -m comment --comment "mcfleet: only memcached clients \
reach memcached" -j MCFLEET-MEMCACHED
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A MCFLEET-DRILL -s 10.89.213.0/24 -p tcp -m tcp --dport 11211 -j REJECT --reject-with tcp-reset
-A MCFLEET-MEMCACHED -i lo -j ACCEPT
-A MCFLEET-MEMCACHED -s 10.89.213.0/24 -j ACCEPT
-A MCFLEET-MEMCACHED -p tcp -j REJECT --reject-with tcp-reset
"""


def test_parse_ruleset_reads_policies_chains_rules_and_jumps():
    ruleset = parse_ruleset(LISTING)
    assert ruleset.policies == {"INPUT": "ACCEPT", "FORWARD": "DROP", "OUTPUT": "ACCEPT"}
    assert ruleset.exists(DRILL_CHAIN) and not ruleset.exists("MCFLEET-OTHER")
    assert ruleset.rules("MCFLEET-OTHER") is None
    assert ruleset.rules(FIREWALL_CHAIN) == firewall_state([11211])[0]
    assert ruleset.jumps(FIREWALL_CHAIN) == [firewall_state([11211])[1]]
    assert ruleset.jumps(DRILL_CHAIN) == [block_state()[1]]
    assert ruleset.listing(DRILL_CHAIN) == [block_state()[1], f"-N {DRILL_CHAIN}", *block_state()[0]]
    assert ruleset.holds(DRILL_CHAIN)
    assert not Ruleset().holds(DRILL_CHAIN)
    # What we render is what iptables lists: the listing needs no change.
    assert not plan_chain(ruleset, FIREWALL_CHAIN, *firewall_state([11211])).changed
    assert not plan_chain(ruleset, DRILL_CHAIN, *block_state()).changed


@pytest.mark.parametrize(
    ("chain", "problem"),
    [
        ("", "non-empty"),
        ("INPUT", "built-in"),
        ("ACCEPT", "built-in"),
        ("MCFLEET-" + "X" * 21, "28 characters"),
        ("BAD NAME", "letters, digits"),
        ("-j", "letters, digits"),
        ("!X", "letters, digits"),
        ('A"B', "letters, digits"),
    ],
)
def test_chain_names_iptables_would_refuse_are_named_with_field_and_value(chain, problem):
    with pytest.raises(NetfilterError, match=problem) as refused:
        validate_chain_name(chain, "chain")
    assert str(refused.value).startswith(f"chain={chain!r}: ")


def test_chain_roles_and_firewall_refuses_maintenance_names():
    assert validate_chain_name("MCFLEET-DRILL-MC1001") == "MCFLEET-DRILL-MC1001"
    assert chain_role("MCFLEET-DRILL") == chain_role("MCFLEET-DRILL-A1") == MAINTENANCE
    assert chain_role("MCFLEET-MAINT") == chain_role("MCFLEET-MAINT-WEEKLY") == MAINTENANCE
    assert chain_role("MCFLEET-MEMCACHED") == chain_role("MCFLEET-DRILLX") == FIREWALL
    with pytest.raises(NetfilterError, match="chain='MCFLEET-MAINT'"):
        client_firewall.validate_chain("MCFLEET-MAINT")
    with pytest.raises(NetfilterError, match="netns='a b'"):
        validate_netns("a b")


def test_networks_of_both_families_are_parsed_and_bad_ones_named():
    assert str(parse_network("10.1.2.3/24", "f")) == "10.1.2.0/24"
    assert parse_network("2001:db8::1", "f").version == 6
    with pytest.raises(NetfilterError, match=r"^sources\[0\]='10.1.2.3/24': "):
        parse_network("10.1.2.3/24", "sources[0]", strict=True)
    with pytest.raises(NetfilterError, match="loopback"):
        parse_network("::1", "sources[0]", forbid_loopback=True)


def test_parse_backend_reads_every_iptables_generation():
    assert parse_backend("iptables v1.8.11 (nf_tables): ...\n") == "nf_tables"
    assert parse_backend("iptables v1.8.7 (legacy)\n") == "legacy"
    assert parse_backend("iptables v1.6.1\n") == "legacy"
    with pytest.raises(NetfilterError, match="cannot tell"):
        parse_backend("nft v1.0.6")


# --- the client firewall's rules in both families ---------------------------------------------


def test_client_networks_go_to_their_family_with_loopback_and_reset_in_both():
    networks = ["10.89.213.7/24", "2001:db8:64::/48", "10.89.213.0/24", "fd00::7"]
    assert client_firewall.client_rules(FIREWALL_CHAIN, networks, family="ipv4") == [
        f"-A {FIREWALL_CHAIN} -i lo -j ACCEPT",
        f"-A {FIREWALL_CHAIN} -s 10.89.213.0/24 -j ACCEPT",
        f"-A {FIREWALL_CHAIN} -p tcp -j REJECT --reject-with tcp-reset",
    ]
    assert client_firewall.client_rules(FIREWALL_CHAIN, networks, family="ipv6") == [
        f"-A {FIREWALL_CHAIN} -i lo -j ACCEPT",
        f"-A {FIREWALL_CHAIN} -s 2001:db8:64::/48 -j ACCEPT",
        f"-A {FIREWALL_CHAIN} -s fd00::7/128 -j ACCEPT",
        f"-A {FIREWALL_CHAIN} -p tcp -j REJECT --reject-with tcp-reset",
    ]
    # ip6tables spells the ICMP answers its own way.
    icmp = client_firewall.client_rules(FIREWALL_CHAIN, [], True, "icmp-admin-prohibited", "ipv6")
    assert icmp[-1] == f"-A {FIREWALL_CHAIN} -j REJECT --reject-with icmp6-adm-prohibited"


def test_bad_client_network_is_refused_naming_item_and_value():
    params = {
        "chain": FIREWALL_CHAIN,
        "state": "present",
        "ports": [11211],
        "client_networks": ["10.0.0.0/8", "10.0.0.0/33"],
        "allow_loopback": True,
        "reject_with": "tcp-reset",
        "comment": "c",
    }
    with pytest.raises(NetfilterError, match=r"^client_networks\[1\]='10.0.0.0/33': not an IPv4 or IPv6"):
        client_firewall.desired_state(params)


def test_module_documentation_matches_its_arguments():
    documented = yaml.safe_load(client_firewall_module.DOCUMENTATION)
    assert documented["module"] == "client_firewall"
    spec = client_firewall_module.ARGUMENT_SPEC
    assert set(documented["options"]) == set(spec)
    for name, option in documented["options"].items():
        assert option.get("default") == spec[name].get("default"), name
        assert option["type"] == spec[name]["type"], name
        assert option.get("choices") == spec[name].get("choices"), name
    returned = yaml.safe_load(client_firewall_module.RETURN)
    assert set(returned) == {"rules", "rules_ipv6", "script", "script_ipv6", "backend"}
    for example in yaml.safe_load(client_firewall_module.EXAMPLES):
        assert set(example["mcfleet.fleet.client_firewall"]) <= set(spec)


# --- the ordering contract ------------------------------------------------------------------


def test_a_block_goes_to_position_1_above_the_firewall():
    table = FakeTable()
    converge_firewall(table, [11211])
    change = converge_block(table)
    assert change.commands[-1].startswith("-I INPUT 1 ! -i lo")
    assert table.input_targets() == [DRILL_CHAIN, FIREWALL_CHAIN]


def test_a_firewall_port_change_during_a_block_lands_below_the_block():
    table = FakeTable()
    converge_firewall(table, [11211])
    converge_block(table)
    change = converge_firewall(table, [11211, 11214])
    # The old jump goes, the new one goes right after the drill's jump, not at position 1.
    assert change.commands == [
        "-D" + firewall_state([11211])[1][2:],
        "-I INPUT 2" + firewall_state([11211, 11214])[1][len("-A INPUT") :],
    ]
    assert table.input_targets() == [DRILL_CHAIN, FIREWALL_CHAIN]
    assert order_violations(table.ruleset.hook_rules(), {FIREWALL_CHAIN}) == []


def test_a_firewall_jump_found_above_a_block_is_moved_below_it():
    # What the firewall used to do: its jump re-inserted at position 1, above the block.
    table = FakeTable(LISTING)
    input_rules = table.ruleset.chains["INPUT"]
    input_rules[0], input_rules[1] = input_rules[1], input_rules[0]
    assert order_violations(input_rules, {FIREWALL_CHAIN})
    change = converge_firewall(table, [11211])
    assert change.changed
    assert not any(line.startswith(":") for line in change.commands), "the chain is fine"
    assert table.input_targets() == [DRILL_CHAIN, FIREWALL_CHAIN, "ACCEPT"]


def test_a_block_found_below_the_firewall_is_moved_to_the_top():
    table = FakeTable(LISTING)
    input_rules = table.ruleset.chains["INPUT"]
    input_rules[0], input_rules[1] = input_rules[1], input_rules[0]
    assert converge_block(table).changed
    assert table.input_targets() == [DRILL_CHAIN, FIREWALL_CHAIN, "ACCEPT"]


def test_jumps_in_place_stay_where_they_are():
    table = FakeTable(LISTING)
    # A firewall jump below foreign rules but above no maintenance jump is left alone.
    table.ruleset.chains["INPUT"].insert(1, "-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT")
    assert not converge_firewall(table, [11211]).changed
    # Two drill chains at the top do not fight over position 1.
    converge_block(table, chain="MCFLEET-DRILL-B", port=11311)
    assert not converge_block(table).changed
    assert not converge_block(table, chain="MCFLEET-DRILL-B", port=11311).changed
    assert table.input_targets()[:2] == ["MCFLEET-DRILL-B", DRILL_CHAIN]


def test_insert_position_follows_the_last_maintenance_jump():
    drill = block_state()[1]
    maint = drill.replace(DRILL_CHAIN, "MCFLEET-MAINT")
    other = "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"
    assert insert_position([], FIREWALL) == 1
    assert insert_position([other, drill, other, maint, other], FIREWALL) == 5
    assert insert_position([other, drill], MAINTENANCE) == 1


STEPS = {
    "firewall": lambda table: converge_firewall(table, [11211]),
    "firewall with new ports": lambda table: converge_firewall(table, [11211, 11214]),
    "firewall with new networks": lambda table: converge_firewall(table, [11211], [ROUTERS, "10.9.0.0/16"]),
    "block": converge_block,
    "block with new port": lambda table: converge_block(table, port=11214),
    # A future maintenance window: a drill-like block in a MCFLEET-MAINT chain.
    "maintenance": lambda table: converge(
        table,
        "MCFLEET-MAINT",
        [rule.replace(DRILL_CHAIN, "MCFLEET-MAINT") for rule in block_state(port=11311)[0]],
        block_state(port=11311)[1].replace(DRILL_CHAIN, "MCFLEET-MAINT"),
    )[0],
}


@pytest.mark.parametrize("order", list(itertools.permutations(STEPS, 3)))
def test_whoever_converges_last_the_block_comes_first(order):
    table = FakeTable("-P INPUT ACCEPT\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n")
    for step in order:
        STEPS[step](table)
        assert order_violations(table.ruleset.hook_rules(), {FIREWALL_CHAIN}) == [], (order, step)
    # Converged: every step run again is a no-op except those the later steps replaced.
    assert not STEPS[order[-1]](table).changed


def test_converge_puts_back_the_order_a_concurrent_block_broke():
    table = FakeTable()
    converge_firewall(table, [11211])

    def block_sneaks_in(fake):
        fake.before_restore = None
        converge_block(fake)

    # The block goes in between the firewall's read and its transaction.
    table.before_restore = block_sneaks_in
    converge_firewall(table, [11214])
    assert len(table.scripts) == 4, "firewall, block, firewall, firewall's fix"
    assert table.input_targets() == [DRILL_CHAIN, FIREWALL_CHAIN]


def test_converge_gives_up_on_a_table_that_never_settles():
    class Stubborn(FakeTable):
        def restore(self, script):
            self.scripts.append(script)

    with pytest.raises(NetfilterError, match="did not reach the desired state after 3"):
        converge_firewall(Stubborn(), [11211])


def test_check_mode_plans_without_writing():
    table = FakeTable()
    change, listing = converge(table, FIREWALL_CHAIN, *firewall_state([11211]), check_mode=True)
    assert change.changed and table.scripts == []
    rules, jump = firewall_state([11211])
    assert listing == change.after == [jump, f"-N {FIREWALL_CHAIN}", *rules]


def test_duplicate_jumps_keep_the_one_that_survives_deletion():
    rules, jump = block_state()
    other = "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"
    table = FakeTable()
    table.ruleset.chains.update({"INPUT": [jump, other, jump], DRILL_CHAIN: list(rules)})
    # The second copy sits below a foreign rule, so both go and one comes back at the top.
    assert converge_block(table).changed
    assert table.ruleset.hook_rules() == [jump, other]
    table.ruleset.chains["INPUT"] = [jump, jump, other]
    change = converge_block(table)
    assert change.commands == ["-D" + jump[2:]]
    assert table.ruleset.hook_rules() == [jump, other]


def test_removal_deletes_only_our_jumps_and_chain():
    table = FakeTable(LISTING)
    change = converge(table, DRILL_CHAIN)[0]
    assert change.commands == ["-D" + block_state()[1][2:], f"-F {DRILL_CHAIN}", f"-X {DRILL_CHAIN}"]
    assert table.input_targets() == [FIREWALL_CHAIN, "ACCEPT"]
    assert not converge(table, DRILL_CHAIN)[0].changed


def test_rollback_script_lines_run_in_the_namespace_with_the_same_binary():
    runner = CommandRunner(lambda argv, data: (0, "", ""), ["ip", "netns", "exec", "ns1"])
    request = validate_request(11211, "reject", [])
    tables = {
        "ipv4": Table(runner, "ipv4", "/usr/sbin/iptables-legacy", "/usr/sbin/iptables-legacy-restore"),
        "ipv6": None,
    }

    class Paths:
        record = "/run/mcfleet/x.json"

    script = rollback_script(tables, request, Paths, "legacy")
    assert "ip netns exec ns1 /usr/sbin/iptables-legacy -w -D INPUT '!' -i lo" in script
    assert "ip netns exec ns1 /usr/sbin/iptables-legacy -w -X MCFLEET-DRILL" in script
    assert "ip6tables" not in script
