"""netfilter_rules: which chains and jumps count as drill or maintenance leftovers."""

import re

from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter import parse_ruleset
from ansible_collections.mcfleet.fleet.plugins.modules.netfilter_rules import leftovers_in

LISTING = """-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N MCFLEET-DRILL-TEST
-N MCFLEET-MEMCACHED
-A INPUT -p tcp -m tcp --dport 11211 -j MCFLEET-DRILL-TEST
-A INPUT -p tcp -m multiport --dports 11211 -m comment --comment "mcfleet: clients" -j MCFLEET-MEMCACHED
-A MCFLEET-DRILL-TEST -s 10.89.213.25/32 -p tcp -j REJECT --reject-with tcp-reset
-A MCFLEET-MEMCACHED -s 10.89.213.25/32 -j ACCEPT
-A FORWARD -j MCFLEET-MAINT
"""


def matches(chain):
    return any(re.match(pattern, chain) for pattern in ("MCFLEET-DRILL", "MCFLEET-MAINT"))


def test_drill_and_maintenance_chains_and_jumps_are_found():
    found = leftovers_in(parse_ruleset(LISTING), matches)
    assert {(item["kind"], item["chain"]) for item in found} == {
        ("chain", "MCFLEET-DRILL-TEST"),
        ("jump", "MCFLEET-DRILL-TEST"),
        ("jump", "MCFLEET-MAINT"),
    }
    jump = next(item for item in found if item["kind"] == "jump" and item["chain"] == "MCFLEET-DRILL-TEST")
    assert jump["rule"] == "-A INPUT -p tcp -m tcp --dport 11211 -j MCFLEET-DRILL-TEST"


def test_the_client_firewall_is_not_a_leftover():
    listing = "\n".join(line for line in LISTING.splitlines() if "DRILL" not in line and "MAINT" not in line)
    assert leftovers_in(parse_ruleset(listing), matches) == []
