"""Ansible's view of the topology model: thin filters over plugins/module_utils.

mcfleet: "{{ groups | mcfleet_topology(hostvars) }}"
"{{ mcfleet | mcfleet_router_config(inventory_hostname) }}"        config file text
"{{ mcfleet | mcfleet_router_config_name(inventory_hostname) }}"   mcrouter.json | memcached-proxy.lua
"{{ mcfleet | mcfleet_mcrouter_flags(inventory_hostname) }}"       list of mcrouter flags
"{{ mcfleet | mcfleet_proxy_route_library }}"                      routelib extension (Lua)
"{{ mcfleet | mcfleet_proxy_options(inventory_hostname, config_path, library_path) }}"
"{{ mcfleet | mcfleet_drill_plan(groups['all'], shard=..., mode=..., ...) }}"   drill targets or refusals
"""

from pathlib import Path

import ansible.module_utils
from ansible.errors import AnsibleFilterError

# The controller does not put ansible.cfg's module_utils on the import path for filters
# (only modules get them shipped), so add this repository's module_utils here.
_MODULE_UTILS = str(Path(__file__).resolve().parent.parent / "module_utils")
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils import drill_plan, render_mcrouter, render_memcached_proxy  # noqa: E402
from ansible.module_utils.topology import TopologyError, build_topology  # noqa: E402

CONFIG_NAMES = {"mcrouter": "mcrouter.json", "memcached_proxy": "memcached-proxy.lua"}


def mcfleet_topology(groups, hostvars):
    try:
        return build_topology(groups, hostvars)
    except TopologyError as error:
        raise AnsibleFilterError(str(error)) from None


def _router(model, host):
    try:
        return model["routers"][host]
    except KeyError:
        raise AnsibleFilterError(f"{host} is not a router or proxy in the topology model") from None


def mcfleet_router_config(model, host):
    engine = _router(model, host)["engine"]
    if engine == "mcrouter":
        return render_mcrouter.render_config_text(model, host)
    return render_memcached_proxy.render_config_text(model, host)


def mcfleet_router_config_name(model, host):
    return CONFIG_NAMES[_router(model, host)["engine"]]


def mcfleet_mcrouter_flags(model, host, config_path=render_mcrouter.CONFIG_PATH, tls_paths=None):
    _router(model, host)
    return render_mcrouter.command_line_flags(model, host, config_path, tls_paths)


def mcfleet_proxy_route_library(model):
    return render_memcached_proxy.ROUTE_LIBRARY


def mcfleet_proxy_options(model, host, config_path, library_path):
    _router(model, host)
    return render_memcached_proxy.command_line_options(model, host, config_path, library_path)


def mcfleet_drill_plan(model, inventory_hosts, **choices):
    return drill_plan.plan_drill(model, inventory_hosts, **choices)


class FilterModule:
    def filters(self):
        return {
            "mcfleet_topology": mcfleet_topology,
            "mcfleet_router_config": mcfleet_router_config,
            "mcfleet_router_config_name": mcfleet_router_config_name,
            "mcfleet_mcrouter_flags": mcfleet_mcrouter_flags,
            "mcfleet_proxy_route_library": mcfleet_proxy_route_library,
            "mcfleet_proxy_options": mcfleet_proxy_options,
            "mcfleet_drill_plan": mcfleet_drill_plan,
        }
