#!/usr/bin/python
"""Admit only memcached clients to the memcached ports (a dedicated chain per address family)."""

DOCUMENTATION = r"""
---
module: client_firewall
short_description: Let only client networks reach memcached's TCP ports, over IPv4 and IPv6
description:
  - Keeps one chain (default C(MCFLEET-MEMCACHED)) in iptables and one in ip6tables that accepts
    loopback and the client networks of that family and rejects every other TCP connection,
    reached from INPUT by one commented jump rule that matches only the memcached TCP ports.
    SSH and every other port are never matched.
  - Reads the whole filter table (C(iptables -S)) first and changes nothing when it already
    matches. Changes are applied per family as one C(iptables-restore --noflush) transaction,
    so there is no moment with a half-built chain.
  - The iptables backend (nf_tables or legacy) is read from C(iptables -V) and that backend's
    binaries are used for both families.
  - "Ordering: a failover drill's or maintenance window's block (chains C(MCFLEET-DRILL*),
    C(MCFLEET-MAINT*), e.g. from M(mcfleet.fleet.shard_block)) must always be evaluated before this
    firewall, or its ACCEPT for the client networks would bypass the block. A new jump rule therefore
    goes right after the last such jump (at the top of INPUT when there is none), so an earlier broad
    ACCEPT cannot bypass it either. An existing matching jump is left where it is, unless a drill or
    maintenance jump follows it: then it is moved below them."
  - If ip6tables is unusable on the host and no IPv6 client network is given, only IPv4 is
    managed (with a warning); IPv6 client networks then make the module fail.
options:
  ports:
    description: memcached TCP ports to protect (plain and TLS listeners).
    type: list
    elements: int
    required: true
  client_networks:
    description:
      - IPv4 or IPv6 addresses or CIDR networks allowed to connect; each goes into the chain of its
        family. Host bits are allowed (C(10.1.2.3/24) means C(10.1.2.0/24)).
      - Anything else fails the module before the host is changed, naming the item and its value.
    type: list
    elements: str
    default: []
  allow_loopback:
    description: Accept connections arriving on C(lo) (local health checks, local routers), in both families.
    type: bool
    default: true
  reject_with:
    description:
      - How refused connections are answered. C(tcp-reset) makes clients fail at once.
      - In ip6tables the ICMP answers are C(icmp6-port-unreachable) and C(icmp6-adm-prohibited).
    type: str
    choices: [tcp-reset, icmp-port-unreachable, icmp-admin-prohibited]
    default: tcp-reset
  chain:
    description:
      - Name of the dedicated chain (at most 28 characters; letters, digits, C(_), C(.), C(-)).
      - Must not be a drill or maintenance chain name (C(MCFLEET-DRILL*), C(MCFLEET-MAINT*)).
    type: str
    default: MCFLEET-MEMCACHED
  comment:
    description:
      - Comment on the jump rule, so operators know who owns it.
      - "At most 256 characters: letters, digits, spaces and C(, . : ; ( ) _ / + = @ -). A quote or
        backslash is refused, since iptables would not list the rule back as it was written."
    type: str
    default: "mcfleet: only memcached clients reach memcached"
  netns:
    description: Manage the firewall inside this network namespace (C(ip netns exec)).
    type: str
  state:
    description: C(absent) removes the jump rules and the chain in both families, and nothing else.
    type: str
    choices: [present, absent]
    default: present
requirements:
  - iptables and iptables-restore (ip6tables and ip6tables-restore for IPv6) on the host
notes:
  - Supports check mode and diff mode (rule listings before and after, per family).
author:
  - mcfleet maintainers (@mcfleet)
"""

EXAMPLES = r"""
- name: Only the app servers reach memcached
  mcfleet.fleet.client_firewall:
    ports: [11211, 11214]
    client_networks: [10.64.0.0/16, 10.192.0.0/16, "2001:db8:64::/48"]

- name: Remove the memcached firewall
  mcfleet.fleet.client_firewall:
    ports: [11211]
    state: absent
"""

RETURN = r"""
rules:
  description: The IPv4 jump rules and chain after the run, as C(iptables -S) prints them.
  returned: always
  type: list
  elements: str
  sample: ['-A INPUT -p tcp -m multiport --dports 11211 -m comment --comment "..." -j MCFLEET-MEMCACHED']
rules_ipv6:
  description: The IPv6 jump rules and chain after the run, as C(ip6tables -S) prints them.
  returned: always
  type: list
  elements: str
  sample: ['-A INPUT -p tcp -m multiport --dports 11211 -m comment --comment "..." -j MCFLEET-MEMCACHED']
script:
  description: The iptables-restore input that was (or in check mode would be) applied; empty when unchanged.
  returned: always
  type: str
script_ipv6:
  description: The ip6tables-restore input that was (or in check mode would be) applied; empty when unchanged.
  returned: always
  type: str
backend:
  description: The iptables backend the rules live in.
  returned: always
  type: str
  sample: nf_tables
"""

# Ansible modules keep their documentation first, so the imports come after it.
from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.client_firewall import (
    DEFAULT_CHAIN,
    DEFAULT_COMMENT,
    REJECT_WITH,
    desired_state,
    networks_by_family,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter import (
    FAMILIES,
    CommandRunner,
    NetfilterError,
    converge,
    detect_backend,
    family_tables,
    netns_prefix,
    validate_netns,
)

ARGUMENT_SPEC = {
    "ports": {"type": "list", "elements": "int", "required": True},
    "client_networks": {"type": "list", "elements": "str", "default": []},
    "allow_loopback": {"type": "bool", "default": True},
    "reject_with": {"type": "str", "choices": list(REJECT_WITH), "default": "tcp-reset"},
    "chain": {"type": "str", "default": DEFAULT_CHAIN},
    "comment": {"type": "str", "default": DEFAULT_COMMENT},
    "netns": {"type": "str"},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
}
RESULT_KEYS = {"ipv4": ("rules", "script"), "ipv6": ("rules_ipv6", "script_ipv6")}


def listing_text(listings):
    return "".join(f"{family}: {line}\n" for family in FAMILIES for line in listings[family])


def run_firewall(module):
    params = module.params
    # Bad input fails before the host is even looked at.
    validate_netns(params["netns"])
    desired = desired_state(params)

    def run(argv, data=None):
        return module.run_command(argv, data=data, binary_data=data is not None)

    runner = CommandRunner(run, netns_prefix(params["netns"]))
    backend = detect_backend(runner)
    tables = family_tables(runner, backend, module.get_bin_path)
    if tables["ipv6"] is None:
        ipv6_networks = networks_by_family(params["client_networks"])["ipv6"]
        if ipv6_networks and params["state"] == "present":
            raise NetfilterError(
                f"client_networks has IPv6 networks ({', '.join(ipv6_networks)}) but ip6tables "
                f"({backend}) is missing or unusable on this host"
            )
        if params["state"] == "present":
            module.warn(f"ip6tables ({backend}) is unusable here: only IPv4 is firewalled")

    result = {"changed": False, "backend": backend}
    before, after = {}, {}
    for family in FAMILIES:
        rules_key, script_key = RESULT_KEYS[family]
        table = tables[family]
        if table is None:
            before[family] = after[family] = result[rules_key] = []
            result[script_key] = ""
            continue
        desired_rules, desired_jump = desired[family]
        change, listing = converge(
            table, params["chain"], desired_rules, desired_jump, check_mode=module.check_mode
        )
        result["changed"] = result["changed"] or change.changed
        result[script_key] = change.script()
        result[rules_key] = listing
        before[family], after[family] = change.before, listing
    if module._diff:
        result["diff"] = {"before": listing_text(before), "after": listing_text(after)}
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = run_firewall(module)
    except NetfilterError as error:
        module.fail_json(msg=str(error))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
