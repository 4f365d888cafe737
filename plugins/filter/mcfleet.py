"""Ansible's view of the topology model: thin filters over the collection's module_utils.

The model itself is built once per run by the mcfleet.fleet.topology action (playbooks/topology.yml).
"{{ mcfleet | mcfleet.fleet.router_config(inventory_hostname) }}"        config file text
"{{ mcfleet | mcfleet.fleet.router_config_name(inventory_hostname) }}"   config.json | proxy.lua
"{{ mcfleet | mcfleet.fleet.mcrouter_flags(inventory_hostname) }}"       list of mcrouter flags
"{{ mcfleet | mcfleet.fleet.proxy_options(inventory_hostname, config_path, library_path) }}"
"{{ mcfleet | mcfleet.fleet.tls_tunnels(inventory_hostname) }}"   a memcached-proxy host's TLS tunnels
"{{ mcfleet | mcfleet.fleet.memcached_clients(inventory_hostname) }}"    CIDRs that may reach a shard
"{{ mcfleet | mcfleet.fleet.proxy_clients(inventory_hostname) }}"   CIDRs that may reach a proxy, and
    the remote datacentres whose routers the inventory does not name
"{{ mcfleet | mcfleet.fleet.drill_plan(groups['all'], shard=..., mode=...) }}"   drill targets or refusals
"{{ mcfleet | mcfleet.fleet.proxy_drill_plan(groups['all'], target=..., datacentre=...) }}"   proxies to block
"{{ mcfleet | mcfleet.fleet.drill_plan_lines(targets) }}"   one line per shard to drill (--check plan)
"{{ item | mcfleet.fleet.network_problem }}"   '' for an IPv4/IPv6 address or CIDR, else why not
"{{ mcfleet | mcfleet.fleet.maintenance_plan(play_hosts, reason=..., action=..., ...) }}"   plan or refusals
"{{ plan | mcfleet.fleet.maintenance_live_problems(health_by_host) }}"   refusals only the fleet can tell
"{{ mcfleet | mcfleet.fleet.maintenance_lock_host(dc) }}"   where a datacentre's drill/maintenance lock lives
"{{ batch_size | mcfleet.fleet.gutter_room(shard_bytes, gutter_counters) }}"   None, or why it is short
"{{ target | mcfleet.fleet.downgrades(host_releases) }}"       a refusal per host newer than the target
"{{ mcfleet | mcfleet.fleet.client_placement(dc, lab_subnet=..., client_router=...) }}"   where the
    client of a drill or maintenance runs (controller or app server) and what it may reach
"{{ timeline_path | mcfleet.fleet.steady_p99 }}"   median of a traffic timeline's per-second p99 (ms)
"{{ reimage_command | mcfleet.fleet.reimage_argv(host, address, release) }}"   the command's words
"{{ progress_log | mcfleet.fleet.maintenance_unfinished_hosts }}"   hosts an interrupted run left part way
"{{ progress_log | mcfleet.fleet.maintenance_done_hosts }}"         hosts the run's journal says are done
"{{ mcfleet | mcfleet.fleet.router_config_path(inventory_hostname, override) }}"  deployed config's path
"{{ mcfleet | mcfleet.fleet.route_explain(router, operation, key, blocked) }}"   how a router routes a key
"{{ mcfleet | mcfleet.fleet.route_what_moves(router, blocked, keys) }}"   where keys go while servers are out
"{{ comparison | mcfleet.fleet.lru_lab_servers(shard, shard_settings, addresses, choices) }}"  the
    LRU comparison's two lab servers; "{{ server | mcfleet.fleet.lru_memcached_conf }}" the config of one
"{{ health | mcfleet.fleet.warm_restart_check(restart_file, extstore_path) }}"   whether a restart on
    the config behind `health` (memcached_health) would keep the cache, and why not
"{{ variables | mcfleet.fleet.memcached_expected_settings(port) }}"   `stats settings` the memcached
    role configures from these inventory variables, its defaults/main.yml filling the rest
"""

from pathlib import Path

import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.mcfleet.fleet.plugins.module_utils import (
    client_placement as client_placement_utils,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils import (
    drill_plan as drill_plan_utils,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils import (
    lru_compare,
    maintenance_progress,
    render_mcrouter,
    render_memcached_proxy,
    route_explain,
    route_hashing,
    tls_material,
    warm_restart,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils import (
    maintenance_plan as maintenance_plan_utils,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils import preflight as preflight_utils
from ansible_collections.mcfleet.fleet.plugins.module_utils import shard_window as shard_window_utils
from ansible_collections.mcfleet.fleet.plugins.module_utils import traffic as traffic_utils
from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter import NetfilterError, parse_network
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import (
    memcached_clients,
    proxy_clients,
)

CONFIG_NAMES = {
    "mcrouter": render_mcrouter.CONFIG_NAME,
    "memcached_proxy": render_memcached_proxy.CONFIG_NAME,
}

CONFIG_PATHS = {
    "mcrouter": render_mcrouter.CONFIG_PATH,
    "memcached_proxy": render_memcached_proxy.CONFIG_PATH,
}
# This file is <collection>/plugins/filter/mcfleet.py.
COLLECTION_ROOT = Path(__file__).parent.parent.parent
MEMCACHED_ROLE_DEFAULTS = COLLECTION_ROOT / "roles" / "memcached" / "defaults" / "main.yml"


def _router(model, host):
    try:
        return model["routers"][host]
    except KeyError:
        raise AnsibleFilterError(f"{host} is not a router or proxy in the topology model") from None


def _proxy_clients(model, host):
    if _router(model, host)["cross_dc_port"] is None:
        raise AnsibleFilterError(f"{host} is a router, not a proxy: it takes no cross-datacentre clients")
    return proxy_clients(model, host)


def router_config(model, host):
    engine = _router(model, host)["engine"]
    if engine == "mcrouter":
        return render_mcrouter.render_config_text(model, host)
    return render_memcached_proxy.render_config_text(model, host)


def router_config_name(model, host):
    return CONFIG_NAMES[_router(model, host)["engine"]]


def router_config_path(model, host, override=None):
    """Where the router's role deploys its config: the inventory's override
    (mcrouter_config_path, memcached_proxy_config_path) or the role's default."""
    return override or CONFIG_PATHS[_router(model, host)["engine"]]


def memcached_role_defaults(path=MEMCACHED_ROLE_DEFAULTS):
    with open(path, encoding="utf-8") as stream:
        return yaml.safe_load(stream) or {}


def memcached_expected_settings(variables, port):
    """`stats settings` values the memcached role configures from `variables` (the host's
    inventory variables; those not set come from the role's defaults/main.yml)."""
    try:
        return preflight_utils.expected_settings(dict(variables or {}), memcached_role_defaults(), port)
    except (TypeError, ValueError) as error:
        raise AnsibleFilterError(f"memcached_expected_settings: {error}") from None


def mcrouter_flags(model, host, config_path=render_mcrouter.CONFIG_PATH, tls_paths=None):
    _router(model, host)
    return render_mcrouter.command_line_flags(model, host, config_path, tls_paths)


def proxy_options(model, host, config_path, library_path):
    _router(model, host)
    return render_memcached_proxy.command_line_options(model, host, config_path, library_path)


def tls_tunnels(model, host):
    _router(model, host)
    return render_memcached_proxy.tls_tunnels(model, host)


def drill_plan(model, inventory_hosts, **choices):
    return drill_plan_utils.plan_drill(model, inventory_hosts, **choices)


def client_placement(model, datacentre, lab_subnet=None, client_router=None):
    """The client's placement; a bad `client_router` fails here, naming the field and value."""
    placement = client_placement_utils.place_client(model, datacentre, lab_subnet, client_router)
    if placement["problems"]:
        raise AnsibleFilterError("; ".join(placement["problems"]))
    return placement


def proxy_drill_plan(model, inventory_hosts, **choices):
    return drill_plan_utils.plan_proxy_drill(model, inventory_hosts, **choices)


def drill_plan_lines(model, targets):
    return drill_plan_utils.describe_targets(model, targets)


def network_problem(value):
    """'' when `value` is an IPv4 or IPv6 address or CIDR network, as client_firewall reads it."""
    try:
        parse_network(value, "network")
    except NetfilterError as error:
        return str(error.__cause__ or error)
    return ""


def tls_pair_problem(cert_pem, key_pem, cert_field, key_field):
    """'' when the PEM certificate and key are a pair (or one is empty), else why not (never key bytes).

    On the controller, before either file reaches a host: a key that is not the certificate's
    would stop memcached at its next start, and break its TLS on refresh_certs.
    """
    if not cert_pem or not key_pem:
        return ""
    try:
        certificate = tls_material.load_certificate(cert_pem, cert_field)
        if not tls_material.key_matches(certificate, key_pem, key_field):
            subject = certificate.subject.rfc4514_string()
            return f"{key_field} is not the private key of {cert_field} ({subject})"
    except tls_material.TLSMaterialError as error:
        return str(error)
    return ""


def maintenance_plan(model, play_hosts, **choices):
    return maintenance_plan_utils.plan_maintenance(model, play_hosts, **choices)


def shard_window(model, host, **choices):
    """One server's window out of service (module_utils/shard_window.py); a bad field fails
    here, naming the field and the value."""
    try:
        return shard_window_utils.describe_window(model, host, **choices)
    except shard_window_utils.WindowError as error:
        raise AnsibleFilterError(f"shard_window of {host}: {error}") from None


def readmit_retries(model):
    """Tries 1 s apart for a router to re-admit a server it held as bad."""
    return shard_window_utils.readmit_retries(model)


def maintenance_lock_host(model, datacentre):
    return maintenance_plan_utils.lock_host(model, datacentre)


def maintenance_live_problems(plan, health):
    return maintenance_plan_utils.live_problems(plan, health)


def gutter_room(batch_size, shard_bytes, gutter_counters, gutter_shares=None):
    return maintenance_plan_utils.gutter_room(batch_size, shard_bytes, gutter_counters, gutter_shares)


def downgrades(target_release, host_releases):
    return maintenance_plan_utils.downgrades(target_release, host_releases)


def reimage_argv(command, host, address, release):
    return maintenance_plan_utils.reimage_argv(command, host, address, release)


def maintenance_done_hosts(progress_log):
    return maintenance_progress.done_hosts(maintenance_progress.load(progress_log))


def maintenance_unfinished_hosts(progress_log):
    """Hosts an interrupted run of playbooks/rolling_maintenance.yml left part way."""
    return maintenance_progress.unfinished_hosts(maintenance_progress.load(progress_log))


def steady_p99(timeline_path):
    """The median of a traffic timeline's per-second p99 latencies (ms), traffic.steady_p99."""
    try:
        rows = traffic_utils.per_second(traffic_utils.load_timeline(timeline_path))
    except OSError as error:
        raise AnsibleFilterError(
            f"steady_p99: cannot read the traffic timeline {timeline_path}: {error}"
        ) from None
    return traffic_utils.steady_p99(rows)


def route_explain_filter(model, router, operation, key, blocked=()):
    """How `router` routes `operation` on `key` with `blocked` servers out (route_explain.explain)."""
    try:
        return route_explain.explain(
            route_explain.router_from_model(model, router), operation, key, blocked, model
        )
    except (route_explain.ExplainError, route_hashing.HashingError) as error:
        raise AnsibleFilterError(f"route_explain: {error}") from None


def route_what_moves(model, router, blocked, keys=10000):
    """Where `keys` synthetic keys go while `blocked` servers are out (route_explain.what_moves)."""
    try:
        return route_explain.what_moves(route_explain.router_from_model(model, router), blocked, keys)
    except (route_explain.ExplainError, route_hashing.HashingError) as error:
        raise AnsibleFilterError(f"route_what_moves: {error}") from None


def lru_lab_servers(comparison, shard, shard_settings, addresses, choices):
    try:
        return lru_compare.lab_servers(comparison, shard, shard_settings, addresses, choices)
    except (lru_compare.CompareError, KeyError) as error:
        raise AnsibleFilterError(f"lru_lab_servers: {error}") from None


class FilterModule:
    def filters(self):
        return {
            "router_config": router_config,
            "router_config_name": router_config_name,
            "mcrouter_flags": mcrouter_flags,
            "proxy_options": proxy_options,
            "tls_tunnels": tls_tunnels,
            "drill_plan": drill_plan,
            "proxy_drill_plan": proxy_drill_plan,
            "drill_plan_lines": drill_plan_lines,
            "memcached_clients": memcached_clients,
            "proxy_clients": _proxy_clients,
            "maintenance_plan": maintenance_plan,
            "gutter_room": gutter_room,
            "maintenance_live_problems": maintenance_live_problems,
            "downgrades": downgrades,
            "client_placement": client_placement,
            "steady_p99": steady_p99,
            "maintenance_done_hosts": maintenance_done_hosts,
            "maintenance_lock_host": maintenance_lock_host,
            "shard_window": shard_window,
            "readmit_retries": readmit_retries,
            "maintenance_unfinished_hosts": maintenance_unfinished_hosts,
            "reimage_argv": reimage_argv,
            "network_problem": network_problem,
            "tls_pair_problem": tls_pair_problem,
            "router_config_path": router_config_path,
            "memcached_expected_settings": memcached_expected_settings,
            "route_explain": route_explain_filter,
            "route_what_moves": route_what_moves,
            "lru_lab_servers": lru_lab_servers,
            "lru_memcached_conf": lru_compare.memcached_conf,
            "warm_restart_check": warm_restart.check,
        }
