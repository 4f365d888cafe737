#!/usr/bin/python
"""List drill and maintenance rules (MCFLEET-DRILL*, MCFLEET-MAINT*) left in iptables/ip6tables."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netfilter_rules
short_description: List drill and maintenance chains and jumps left in iptables and ip6tables
description:
  - Reads the filter table of IPv4 and IPv6 (C(iptables -S), C(ip6tables -S)) through every
    iptables backend present on the host (nf_tables and legacy; rules made with one are
    invisible to the other) and lists every chain whose name matches O(patterns), and every
    rule, in any chain, that jumps to such a chain.
  - The default patterns are those of a failover drill's block (C(MCFLEET-DRILL...)) and of a
    maintenance window's (C(MCFLEET-MAINT...)); on a host ready for maintenance none is left.
  - Read-only; C(changed) is always false. A backend or family whose C(iptables) is missing or
    cannot read its table is skipped and named in RV(tables_skipped); the module fails only
    when no table at all could be read.
version_added: 0.2.0
author: mcfleet maintainers (@mcfleet)
options:
  patterns:
    description: Regular expressions (C(re.match), anchored at the start) chain names are matched against.
    type: list
    elements: str
    default: ["MCFLEET-DRILL", "MCFLEET-MAINT"]
attributes:
  check_mode:
    support: full
    description: Reads only, so it runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing.
  platform:
    support: full
    platforms: debian
    description: Debian hosts with iptables 1.8 (nf_tables or legacy backend).
notes:
  - Needs root (reading netfilter tables needs CAP_NET_ADMIN).
"""

EXAMPLES = r"""
- name: Look for drill or maintenance rules left on the host
  mcfleet.fleet.netfilter_rules:
  register: leftovers

- name: Fail when one is left
  ansible.builtin.assert:
    that: leftovers.leftovers | length == 0
    fail_msg: "{{ leftovers.leftovers | map(attribute='rule') | join('; ') }}"
"""

RETURN = r"""
leftovers:
  description:
    - One item per matching chain (C(kind=chain), C(rule) is C(-N CHAIN)) and per rule jumping to one
      (C(kind=jump), C(rule) as C(iptables -S) prints it), in every table read.
  returned: always
  type: list
  elements: dict
  contains:
    family:
      description: C(ipv4) or C(ipv6).
      type: str
    backend:
      description: C(nf_tables) or C(legacy).
      type: str
    kind:
      description: C(chain) or C(jump).
      type: str
    chain:
      description: The matching chain.
      type: str
    rule:
      description: The chain's C(-N) line or the jumping rule.
      type: str
  sample:
    - {family: ipv4, backend: nf_tables, kind: jump, chain: MCFLEET-DRILL,
       rule: "-A INPUT -p tcp -m tcp --dport 11211 -m comment --comment mcfleet -j MCFLEET-DRILL"}
tables_read:
  description: The tables that were read, as C(<family>/<backend>).
  returned: always
  type: list
  elements: str
  sample: [ipv4/nf_tables, ipv6/nf_tables]
tables_skipped:
  description: Tables that could not be read (binary missing, no kernel support), as C(<family>/<backend>).
  returned: always
  type: list
  elements: str
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter import (
    BACKENDS,
    FAMILIES,
    CommandRunner,
    parse_ruleset,
    rule_target,
)

SUFFIX = {"nf_tables": "nft", "legacy": "legacy"}
STEMS = {"ipv4": "iptables", "ipv6": "ip6tables"}


def leftovers_in(ruleset, matches):
    """Matching chains and rules that jump to them, in one family's Ruleset."""
    found = []
    for chain, rules in ruleset.chains.items():
        if matches(chain):
            found.append({"kind": "chain", "chain": chain, "rule": f"-N {chain}"})
        for rule in rules:
            target = rule_target(rule)
            if target and matches(target):
                found.append({"kind": "jump", "chain": target, "rule": rule})
    return found


def main():
    module = AnsibleModule(
        argument_spec={
            "patterns": {"type": "list", "elements": "str", "default": ["MCFLEET-DRILL", "MCFLEET-MAINT"]},
        },
        supports_check_mode=True,
    )
    try:
        compiled = [re.compile(pattern) for pattern in module.params["patterns"]]
    except re.error as error:
        module.fail_json(msg=f"patterns: not a regular expression: {error}")

    def matches(chain):
        return any(pattern.match(chain) for pattern in compiled)

    def run(argv, data=None):
        return module.run_command(argv, data=data, binary_data=data is not None)

    # iptables 1.8 ships iptables-nft and iptables-legacy: read each backend through its own
    # binaries only, so one backend is never read twice under two names. Before 1.8 there is
    # only `iptables`, which is legacy.
    suffixed = {backend: module.get_bin_path(f"iptables-{SUFFIX[backend]}") for backend in BACKENDS}
    plain = {"iptables", "ip6tables"}

    def which(name):
        return None if any(suffixed.values()) and name in plain else module.get_bin_path(name)

    runner = CommandRunner(run)
    leftovers, read, skipped = [], [], []
    for backend in BACKENDS:
        if any(suffixed.values()) and not suffixed[backend]:
            skipped.extend(f"{family}/{backend}" for family in FAMILIES)
            continue
        if not any(suffixed.values()) and backend != "legacy":
            continue
        for family in FAMILIES:
            name = f"{family}/{backend}"
            stem = STEMS[family]
            binary = which(f"{stem}-{SUFFIX[backend]}") or which(stem)
            # One `-S` listing per table: it fails where the binary or the kernel cannot serve it.
            listing = runner([binary, "-w", "-S"]) if binary else None
            if listing is None or listing.rc != 0:
                skipped.append(name)
                continue
            read.append(name)
            found = leftovers_in(parse_ruleset(listing.stdout), matches)
            leftovers.extend({"family": family, "backend": backend, **item} for item in found)
    if not read:
        module.fail_json(msg=f"no iptables table readable ({', '.join(skipped)})", tables_skipped=skipped)
    module.exit_json(changed=False, leftovers=leftovers, tables_read=read, tables_skipped=skipped)


if __name__ == "__main__":
    main()
