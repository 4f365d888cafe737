#!/usr/bin/python
"""Ansible module: which server holds a key, and what moves when shards are blocked, without a router."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: route_explain
short_description: Explain which memcached server a router sends a key to, without a running router
description:
  - Reads a router's configuration (the topology model and a router host, or a rendered
    mcrouter C(config.json) or memcached proxy C(proxy.lua)) and follows a request through
    its route handles as the engine does. The routing prefix C(/<datacentre>/<cluster>/) is
    read as the engine reads it; the key is placed by the engine's own hashing (mcrouter
    Ch3 C(furc_hash); memcached's proxy XXH3 and jump hash).
  - With O(blocked), those servers answer with errors, so failover routes take their next
    child (the gutter pool for a datacentre's own keys).
  - With O(keys), counts where that many keys go while O(blocked) servers are out, against
    where they go when none is (RV(what_moves)).
  - With a model, a request handed to another datacentre's proxy is followed into that
    proxy's own routes (C(next_hops) of RV(explanation)).
  - Reads only; C(changed) is always false. Run it where the model or configuration is,
    usually the controller (C(delegate_to=localhost)); it needs the Python packages
    C(xxhash) (memcached proxy placement) and C(numpy) (O(keys)).
version_added: 0.3.0
author: mcfleet maintainers (@mcfleet)
options:
  model:
    description: The topology model (the C(mcfleet) fact built by playbooks/topology.yml).
    type: dict
  router:
    description: The router or proxy host of O(model) whose routes to follow.
    type: str
  config:
    description: Path of a rendered router configuration, instead of O(model) and O(router).
    type: path
  engine:
    description: The engine of O(config); guessed from its text when omitted (JSON is mcrouter).
    type: str
    choices: [mcrouter, memcached_proxy]
  datacentre:
    description: The router's datacentre, for an mcrouter O(config) (read from the config when omitted).
    type: str
  operation:
    description: The memcached command (meta commands only through memcached's proxy).
    type: str
    default: get
    choices: [get, gets, set, add, replace, append, prepend, cas, delete, incr, decr, touch, gat, gats,
              mg, ms, md, ma]
  key:
    description: The key, with its routing prefix as the client sends it (at most 250 bytes).
    type: str
  keys:
    description: How many synthetic keys to place for RV(what_moves).
    type: int
  prefix:
    description:
      - Routing prefix of the keys counted with O(keys); the router's C(/<datacentre>/mw/) when omitted.
    type: str
  blocked:
    description:
      - Servers that fail (inventory host names, or C(address:port)).
      - A name that is no server of the router's pools (with O(model), no host of the model) is
        refused, in either mode, since a typo would block nothing and make every key look unaffected.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Reads only; the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing.
  platform:
    support: full
    platforms: posix
    description: Any host with the model or the configuration, usually the controller.
"""

EXAMPLES = r"""
- name: Which server holds /eqiad/mw/user:42 when mc1001 is out?
  mcfleet.fleet.route_explain:
    model: "{{ mcfleet }}"
    router: mw1001
    operation: get
    key: /eqiad/mw/user:42
    blocked: [mc1001]
  delegate_to: localhost
  register: route

- name: What moves to the gutter while mc1001 and mc1002 are out
  mcfleet.fleet.route_explain:
    model: "{{ mcfleet }}"
    router: mw1001
    keys: 100000
    blocked: [mc1001, mc1002]
  delegate_to: localhost
  register: moves

- name: Explain with a deployed configuration instead of the model
  mcfleet.fleet.route_explain:
    config: /etc/mcfleet/proxy.lua
    operation: set
    key: /*/mw-wan/purge:1
"""

RETURN = r"""
explanation:
  description:
    - How the request is routed. C(route) lists the handles passed, one line each, indented by depth;
      C(destinations) the servers it reaches (C(pool), C(index), C(pool_size), C(server), C(host),
      C(mode) sync or async); C(hashed_key) the part of the key the pool hashes.
  returned: when key is given
  type: dict
destinations:
  description: The memcached servers the request ends on (through proxies, when a model is given).
  returned: when key is given
  type: list
  elements: dict
what_moves:
  description:
    - C(keys) placed, C(moved) and C(moved_fraction) of them placed elsewhere while O(blocked) are out,
      C(failed) with no server, C(destinations) and C(moved_to) mapping each server to its C(count)
      and C(fraction) of all keys.
  returned: when keys is given
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils import route_explain, route_hashing


def main():
    module = AnsibleModule(
        argument_spec={
            "model": {"type": "dict"},
            "router": {"type": "str"},
            "config": {"type": "path"},
            "engine": {"type": "str", "choices": list(route_explain.ENGINES)},
            "datacentre": {"type": "str"},
            "operation": {"type": "str", "default": "get", "choices": list(route_explain.OPERATIONS)},
            "key": {"type": "str", "no_log": False},
            "keys": {"type": "int", "no_log": False},
            "prefix": {"type": "str"},
            "blocked": {"type": "list", "elements": "str", "default": []},
        },
        required_one_of=[("model", "config"), ("key", "keys")],
        mutually_exclusive=[("model", "config")],
        required_together=[("model", "router")],
        supports_check_mode=True,
    )
    params = module.params
    result = {"changed": False}
    try:
        if params["config"]:
            try:
                with open(params["config"], encoding="utf-8") as stream:
                    text = stream.read()
            except OSError as error:
                module.fail_json(
                    msg=f"config={params['config']}: cannot read it ({error.strerror})", **result
                )
            router = route_explain.load_router(text, params["config"], params["engine"], params["datacentre"])
        else:
            router = route_explain.router_from_model(params["model"], params["router"])
        if params["key"] is not None:
            explanation = route_explain.explain(
                router, params["operation"], params["key"], params["blocked"], params["model"]
            )
            result["explanation"] = explanation
            result["destinations"] = route_explain.final_destinations(explanation)
        if params["keys"] is not None:
            result["what_moves"] = route_explain.what_moves(
                router, params["blocked"], params["keys"], params["operation"], params["prefix"]
            )
    except (route_explain.ExplainError, route_hashing.HashingError) as error:
        module.fail_json(msg=str(error), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
