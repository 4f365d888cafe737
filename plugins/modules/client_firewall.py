#!/usr/bin/python
"""Admit only memcached clients to the memcached ports (a dedicated iptables chain)."""

DOCUMENTATION = r"""
---
module: client_firewall
short_description: Let only client networks reach memcached's TCP ports
description:
  - Keeps one iptables chain (default C(MCFLEET-MEMCACHED)) that accepts loopback and the
    client networks and rejects everything else, reached from INPUT by one commented jump
    rule that matches only the memcached TCP ports. SSH and every other port are never matched.
  - Reads the current chain and jump rules (C(iptables -S)) first and changes nothing when they
    already match. Changes are applied as one C(iptables-restore --noflush) transaction, so
    there is no moment with a half-built chain.
  - A new jump rule goes to the top of INPUT so an earlier broad ACCEPT cannot bypass it;
    an existing matching jump is left where it is.
options:
  ports:
    description: memcached TCP ports to protect (plain and TLS listeners).
    type: list
    elements: int
    required: true
  client_networks:
    description: IPv4 addresses or CIDR networks allowed to connect.
    type: list
    elements: str
    default: []
  allow_loopback:
    description: Accept connections arriving on C(lo) (local health checks, local routers).
    type: bool
    default: true
  reject_with:
    description: How refused connections are answered. C(tcp-reset) makes clients fail at once.
    type: str
    choices: [tcp-reset, icmp-port-unreachable, icmp-admin-prohibited]
    default: tcp-reset
  chain:
    description: Name of the dedicated chain.
    type: str
    default: MCFLEET-MEMCACHED
  comment:
    description: Comment on the jump rule, so operators know who owns it.
    type: str
    default: "mcfleet: only memcached clients reach memcached"
  state:
    description: C(absent) removes the jump rule and the chain, and nothing else.
    type: str
    choices: [present, absent]
    default: present
author:
  - mcfleet maintainers (@mcfleet)
"""

EXAMPLES = r"""
- name: Only the app servers reach memcached
  mcfleet.fleet.client_firewall:
    ports: [11211, 11214]
    client_networks: [10.64.0.0/16, 10.192.0.0/16]

- name: Remove the memcached firewall
  mcfleet.fleet.client_firewall:
    ports: [11211]
    state: absent
"""

RETURN = r"""
rules:
  description: The chain and jump rules after the run, as C(iptables -S) prints them.
  returned: always
  type: list
  elements: str
  sample: ['-A INPUT -p tcp -m multiport --dports 11211 -m comment --comment "..." -j MCFLEET-MEMCACHED']
script:
  description: The iptables-restore input that was (or in check mode would be) applied; empty when unchanged.
  returned: always
  type: str
"""

# Ansible modules keep their documentation first, so the imports come after it.
from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.client_firewall import (
    FirewallSpecError,
    chain_rules,
    client_rules,
    jump_rule,
    jumps_to,
    listing,
    plan,
    validate_chain,
)


def read_state(module, iptables, chain):
    rc, chain_listing, _ = module.run_command([iptables, "-w", "-S", chain])
    current_rules = chain_rules(chain_listing, chain) if rc == 0 else None
    rc, input_listing, err = module.run_command([iptables, "-w", "-S", "INPUT"])
    if rc != 0:
        module.fail_json(msg=f"cannot list the INPUT chain: {err.strip()}")
    return current_rules, jumps_to(input_listing, chain)


def main():
    module = AnsibleModule(
        argument_spec={
            "ports": {"type": "list", "elements": "int", "required": True},
            "client_networks": {"type": "list", "elements": "str", "default": []},
            "allow_loopback": {"type": "bool", "default": True},
            "reject_with": {
                "type": "str",
                "choices": ["tcp-reset", "icmp-port-unreachable", "icmp-admin-prohibited"],
                "default": "tcp-reset",
            },
            "chain": {"type": "str", "default": "MCFLEET-MEMCACHED"},
            "comment": {"type": "str", "default": "mcfleet: only memcached clients reach memcached"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        supports_check_mode=True,
    )
    params = module.params
    iptables = module.get_bin_path("iptables", required=True)
    iptables_restore = module.get_bin_path("iptables-restore", required=True)
    try:
        chain = validate_chain(params["chain"])
        if params["state"] == "present":
            desired_rules = client_rules(
                chain, params["client_networks"], params["allow_loopback"], params["reject_with"]
            )
            desired_jump = jump_rule(chain, params["ports"], params["comment"])
        else:
            desired_rules = desired_jump = None
    except FirewallSpecError as error:
        module.fail_json(msg=str(error))

    current_rules, current_jumps = read_state(module, iptables, chain)
    change = plan(chain, current_rules, current_jumps, desired_rules, desired_jump)
    result = {
        "changed": change["changed"],
        "script": change["script"],
        "rules": change["after"],
        "diff": {"before": "\n".join(change["before"]) + "\n", "after": "\n".join(change["after"]) + "\n"},
    }
    if change["changed"] and not module.check_mode:
        rc, _, err = module.run_command([iptables_restore, "-w", "--noflush"], data=change["script"])
        if rc != 0:
            module.fail_json(msg=f"iptables-restore refused the memcached firewall: {err.strip()}", **result)
        current_rules, current_jumps = read_state(module, iptables, chain)
        result["rules"] = listing(chain, current_rules, current_jumps)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
