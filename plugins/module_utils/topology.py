"""The one topology model of the memcached fleet, built and validated from inventory data.

`build_topology(groups, hostvars)` turns Ansible's `groups` and `hostvars` into a plain
dict (see `docs` in the filter plugin and the shape below) or raises `TopologyError`
listing every problem at once, each naming the field and the value it got. Everything
else (renderers, roles, modules) reads this model and never re-derives pool membership,
ports or timeouts.

Shape:
    datacentres.<dc>: name, local, route_prefix, broadcast_prefix,
                      main, gutter, routers, proxies_primary, proxies_secondary
                      (lists of {host, address, port}, sorted by host),
                      router_networks (a remote datacentre's app-server networks, CIDRs, or None
                      when the inventory does not say: the proxies' firewall needs them)
    (proxy entries also carry tunnel_port: see `tls` below)
    ports, gutter_ttl_s, failover_errors, tko, cross_dc_tls, broadcast_prefix
    tls:             ca_file (controller path of the operator's CA certificate, or None),
                     paths {ca, cert, key} (where hosts keep them), tunnel_base_port
    routers.<host>:  datacentre, engine, address, port, role, cross_dc_port,
                     tls_files {cert, key} (controller paths) or None
    hosts.<host>:    datacentre, pool, address, port,
                     release (the Debian release the host must run: `mcfleet_release`, or None)
    controller_addresses: addresses the controller reaches memcached from (drills, checks)
    shadow:          None, or a copy of one main shard's traffic to spare servers (shadowing):
                     shard, datacentre, shard_index (its position in the main pool),
                     candidates [{host, address, port}], key_fraction [from, to],
                     routers (the routers that send the copy)

Knobs given on the command line (`-e mcfleet_gutter_ttl_s=11`) arrive as strings: whole
numbers and booleans written as text are read as what they say; anything else is refused.
"""

import ipaddress
import re
from collections.abc import Mapping

# Functional inventory groups → the pool key they fill in a datacentre.
POOL_GROUPS = {
    "memcached_main": "main",
    "memcached_gutter": "gutter",
    "routers": "routers",
    "proxies_primary": "proxies_primary",
    "proxies_secondary": "proxies_secondary",
}
# Pool key → the role a router/proxy plays (memcached pools have none).
ROUTER_ROLES = {
    "routers": "router",
    "proxies_primary": "proxy_primary",
    "proxies_secondary": "proxy_secondary",
}
HOST_POOL_NAMES = {
    "main": "main",
    "gutter": "gutter",
    "routers": "router",
    "proxies_primary": "proxy_primary",
    "proxies_secondary": "proxy_secondary",
}

ENGINES = ("mcrouter", "memcached_proxy")
# mcrouter's failover_errors vocabulary (FailoverErrorsSettings).
FAILOVER_ERRORS = (
    "busy",
    "connect_error",
    "connect_timeout",
    "data_timeout",
    "local_error",
    "remote_error",
    "tko",
    "try_again",
)
# The routing prefix is /<datacentre>/<cluster>/, as in Wikimedia's mcrouter setup.
ROUTE_CLUSTER = "mw"
BROADCAST_CLUSTER = "mw-wan"
BROADCAST_PREFIX = f"/*/{BROADCAST_CLUSTER}/"

# Gutter entries must expire quickly (Facebook's memcache paper, §3.3); an hour is
# already far past any gutter TTL anyone runs, and 0 would mean "never expire".
GUTTER_TTL_RANGE = (1, 3600)

# Wikimedia's production values (operations-puppet,
# hieradata/common/profile/mediawiki/mcrouter_wancache.yaml; probe delay raised after T255511).
DEFAULTS = {
    "mcfleet_memcached_port": 11211,
    "mcfleet_router_port": 11213,
    "mcfleet_tls_port": 11214,
    "mcfleet_gutter_ttl_s": 60,
    "mcfleet_failover_errors": ["tko"],
    "mcfleet_router_engine": "mcrouter",
    "mcfleet_cross_dc_tls": True,
    "mcfleet_remote_datacentres": {},
    # The operator's CA certificate on the controller; every cross-datacentre peer trusts it.
    "mcfleet_tls_ca_file": None,
    # Routers whose engine cannot dial TLS (memcached's proxy on Debian trixie) reach each
    # remote proxy through a local TLS tunnel on 127.0.0.1:<base + the proxy's index>.
    "mcfleet_tls_tunnel_base_port": 21214,
    # Where playbooks run from: shards admit it so drills and checks can read them.
    "mcfleet_controller_addresses": [],
    # A shadow of one main shard's traffic (playbooks/shadow_lru.yml sets one for a run).
    "mcfleet_shadow": None,
    # mcrouter's slow warm-up of a cold main shard (its PoolRoute's slow_warmup): none by default.
    "mcfleet_mcrouter_slow_warmup": None,
}
TKO_DEFAULTS = {
    "timeouts_until_tko": 10,
    "probe_timeout_initial_ms": 60000,
    "probe_timeout_max_ms": 60000,
    "server_timeout_ms": 1000,
    "cross_region_timeout_ms": 250,
    "cross_cluster_timeout_ms": 1000,
}
# Settings that must be the same on every host: the model has one value for each.
FLEET_SETTINGS = (
    "mcfleet_tls_port",
    "mcfleet_gutter_ttl_s",
    "mcfleet_failover_errors",
    "mcfleet_tko",
    "mcfleet_cross_dc_tls",
    "mcfleet_remote_datacentres",
    "mcfleet_controller_addresses",
    "mcfleet_shadow",
    "mcfleet_tls_ca_file",
    "mcfleet_tls_tunnel_base_port",
    "mcfleet_mcrouter_slow_warmup",
)
# mcrouter's SlowWarmUpRouteSettings (facebook/mcrouter mcrouter/routes/SlowWarmUpRouteSettings.cpp):
# a main shard whose hit ratio is below enable_threshold gets start + step * hit ratio of its
# gets, the rest go to the gutter, until its hit ratio passes disable_threshold.
SLOW_WARMUP_FIELDS = ("enable_threshold", "disable_threshold", "start", "step", "min_requests")
SHADOW_KEYS = ("shard", "candidates", "key_fraction", "routers")
# A candidate is a spare server, not an inventory host; its name labels pools and reports.
CANDIDATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Where routers and proxies keep the cross-datacentre TLS material (installed from the
# controller files named by mcfleet_tls_ca_file, mcfleet_tls_cert_file, mcfleet_tls_key_file).
TLS_PATHS = {
    "ca": "/etc/mcfleet/tls/ca.pem",
    "cert": "/etc/mcfleet/tls/cert.pem",
    "key": "/etc/mcfleet/tls/key.pem",
}
# Debian releases a host may be expected to run (`mcfleet_release`, optional per host):
# the ones the memcached role has vars for (roles/memcached/vars/<release>.yml).
RELEASES = ("buster", "bullseye", "bookworm", "trixie")
# A datacentre name becomes part of key prefixes and Lua/JSON pool names.
DATACENTRE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class TopologyError(ValueError):
    """The inventory does not describe a valid fleet; `problems` lists every reason."""

    def __init__(self, problems):
        self.problems = list(problems)
        count = f"{len(self.problems)} problem{'' if len(self.problems) == 1 else 's'}"
        listed = "".join(f"\n  - {problem}" for problem in self.problems)
        super().__init__(f"invalid mcfleet topology ({count}):{listed}")


def build_topology(groups, hostvars, shadow=None):
    """Return the validated model for `groups` ({group: [host]}) and `hostvars` ({host: vars}).

    `shadow` (the shape of `mcfleet_shadow`) replaces the inventory's `mcfleet_shadow`: a
    playbook turns a shadow on for its run without changing the inventory."""
    problems = []
    membership = _pool_membership(groups, problems)
    hosts_sorted = sorted(membership)
    settings = _fleet_settings(hosts_sorted, hostvars, problems)
    ports = {
        "memcached": _number(settings["mcfleet_memcached_port"]),
        "router": _number(settings["mcfleet_router_port"]),
        "tls": _number(settings["mcfleet_tls_port"]),
    }
    # The memcached and router ports are checked per host below; the TLS port only here.
    if not _is_port(ports["tls"]):
        problems.append(f"mcfleet_tls_port: {ports['tls']!r} is not a TCP port (1..65535)")
    tko = _tko(settings["mcfleet_tko"], problems)
    gutter_ttl_s = _gutter_ttl(_number(settings["mcfleet_gutter_ttl_s"]), problems)
    failover_errors = _failover_errors(settings["mcfleet_failover_errors"], problems)
    controller_addresses = _controller_addresses(settings["mcfleet_controller_addresses"], problems)
    slow_warmup = _slow_warmup(_plain(settings["mcfleet_mcrouter_slow_warmup"]), problems)
    cross_dc_tls = _boolean(settings["mcfleet_cross_dc_tls"])
    if not isinstance(cross_dc_tls, bool):
        problems.append(f"mcfleet_cross_dc_tls: {cross_dc_tls!r} is not a boolean")
        cross_dc_tls = True
    for name in ("router", "tls"):
        if ports[name] == ports["memcached"] and _is_port(ports[name]):
            problems.append(f"mcfleet_{name}_port: {ports[name]} is also mcfleet_memcached_port")
    if ports["router"] == ports["tls"] and _is_port(ports["router"]):
        problems.append(f"mcfleet_tls_port: {ports['tls']} is also mcfleet_router_port")

    datacentres = {}
    model_hosts = {}
    model_routers = {}
    endpoints = {}  # (address, port) -> host, to find duplicates
    for host in hosts_sorted:
        pool = membership[host]
        hvars = hostvars.get(host) or {}
        datacentre = _datacentre_of(host, hvars, problems)
        address = _address_of(host, hvars, problems)
        if pool in ("main", "gutter"):
            port = _port_of(host, hvars, "mcfleet_memcached_port", ports["memcached"], problems)
        else:
            port = _port_of(host, hvars, "mcfleet_router_port", ports["router"], problems)
        if datacentre is None:
            continue
        dc = datacentres.setdefault(datacentre, _new_datacentre(datacentre, local=True))
        entry = {"host": host, "address": address, "port": port}
        if pool in ROUTER_ROLES and pool != "routers":
            # Remote routers reach proxies on the cross-datacentre (TLS) port.
            dc[pool].append({"host": host, "address": address, "port": ports["tls"]})
        else:
            dc[pool].append(entry)
        model_hosts[host] = {
            "datacentre": datacentre,
            "pool": HOST_POOL_NAMES[pool],
            "address": address,
            "port": port,
            "release": _release_of(host, hvars, problems),
        }
        _claim_endpoint(endpoints, address, port, host, problems)
        if pool in ROUTER_ROLES:
            engine = hvars.get("mcfleet_router_engine", DEFAULTS["mcfleet_router_engine"])
            if engine not in ENGINES:
                problems.append(
                    f"{host}: mcfleet_router_engine {engine!r} is not one of {', '.join(ENGINES)}"
                )
            is_proxy = pool != "routers"
            if is_proxy:
                _claim_endpoint(endpoints, address, ports["tls"], host, problems)
            model_routers[host] = {
                "datacentre": datacentre,
                "engine": str(engine),
                "address": address,
                "port": port,
                "role": ROUTER_ROLES[pool],
                "cross_dc_port": ports["tls"] if is_proxy else None,
                "tls_files": {
                    "cert": _plain(hvars.get("mcfleet_tls_cert_file")),
                    "key": _plain(hvars.get("mcfleet_tls_key_file")),
                },
            }

    _add_remote_datacentres(
        datacentres, settings["mcfleet_remote_datacentres"], ports["tls"], endpoints, problems
    )
    _check_pools(datacentres, model_routers, problems)
    if not any(dc["main"] for dc in datacentres.values()):
        problems.append("memcached_main: no main shards in this inventory")
    tls = _tls(settings, cross_dc_tls, datacentres, model_routers, problems)

    for dc in datacentres.values():
        for pool in ("main", "gutter", "routers", "proxies_primary", "proxies_secondary"):
            dc[pool].sort(key=lambda entry: entry["host"] or "")
    shadow_spec = _plain(shadow) if shadow is not None else settings["mcfleet_shadow"]
    model_shadow = _shadow(shadow_spec, datacentres, model_hosts, ports["memcached"], problems)
    if problems:
        raise TopologyError(problems)
    _assign_tunnel_ports(datacentres, tls["tunnel_base_port"])
    return {
        "datacentres": dict(sorted(datacentres.items())),
        "ports": ports,
        "gutter_ttl_s": gutter_ttl_s,
        "failover_errors": failover_errors,
        "tko": tko,
        "cross_dc_tls": cross_dc_tls,
        "tls": tls,
        "broadcast_prefix": BROADCAST_PREFIX,
        "routers": dict(sorted(model_routers.items())),
        "hosts": dict(sorted(model_hosts.items())),
        "controller_addresses": controller_addresses,
        "shadow": model_shadow,
        "slow_warmup": slow_warmup,
    }


def memcached_clients(model, host):
    """Addresses that must reach memcached on `host`, as CIDRs (IPv4 /32, IPv6 /128).

    Its own datacentre's routers and proxies, every other datacentre's proxies (they
    carry cross-datacentre traffic in) and the controller. A datacentre without proxies is
    reached by the other datacentres' routers directly (the renderers route to its main
    pool), so then those routers are clients too. Sorted, IPv4 first.
    """
    datacentre = model["hosts"][host]["datacentre"]
    own = model["datacentres"][datacentre]
    addresses = set(model.get("controller_addresses") or [])
    for name, dc in model["datacentres"].items():
        pools = ("proxies_primary", "proxies_secondary")
        if name == datacentre or not own["proxies_primary"]:
            pools = ("routers", *pools)
        for pool in pools:
            addresses.update(entry["address"] for entry in dc[pool])
    return _sorted_cidrs(addresses)


def _sorted_cidrs(addresses):
    """Addresses or networks as unique CIDRs (IPv4 /32, IPv6 /128 for an address), IPv4 first."""
    networks = {ipaddress.ip_network(address, strict=False) for address in addresses}
    return [
        str(network)
        for network in sorted(networks, key=lambda n: (n.version, n.network_address, n.prefixlen))
    ]


def proxy_clients(model, host):
    """Who must reach the proxy `host` on its ports: {networks, unknown_datacentres}.

    networks: every other datacentre's routers and proxies (the cross-datacentre traffic a
    proxy exists for) and the controller, as CIDRs, sorted, IPv4 first. A datacentre outside
    this inventory contributes its proxies and its `router_networks`; one that does not give
    them is named in unknown_datacentres, since a firewall built without them would refuse
    its app servers.
    """
    datacentre = model["routers"][host]["datacentre"]
    addresses = set(model.get("controller_addresses") or [])
    unknown = []
    for name, dc in sorted(model["datacentres"].items()):
        if name == datacentre:
            continue
        for pool in ("routers", "proxies_primary", "proxies_secondary"):
            addresses.update(entry["address"] for entry in dc[pool])
        if not dc["local"]:
            if dc["router_networks"] is None:
                unknown.append(name)
            else:
                addresses.update(dc["router_networks"])
    return {"networks": _sorted_cidrs(addresses), "unknown_datacentres": unknown}


def route_prefix(datacentre):
    return f"/{datacentre}/{ROUTE_CLUSTER}/"


def broadcast_prefix(datacentre):
    return f"/{datacentre}/{BROADCAST_CLUSTER}/"


def _new_datacentre(name, local):
    return {
        "name": name,
        "local": local,
        "route_prefix": route_prefix(name),
        "broadcast_prefix": broadcast_prefix(name),
        "main": [],
        "gutter": [],
        "routers": [],
        "proxies_primary": [],
        "proxies_secondary": [],
        "router_networks": None,
    }


def _pool_membership(groups, problems):
    """Map each host to its one pool key; a host in two pools is a problem."""
    pools_of = {}
    for group in POOL_GROUPS:
        for host in groups.get(group) or []:
            pools_of.setdefault(str(host), []).append(group)
    membership = {}
    for host, host_groups in sorted(pools_of.items()):
        if host_groups == ["memcached_main", "memcached_gutter"]:
            problems.append(
                f"{host}: gutter server is also a main shard (memcached_main and memcached_gutter)"
            )
        elif host_groups == ["proxies_primary", "proxies_secondary"]:
            problems.append(
                f"proxies_secondary: {host} is also in proxies_primary; the secondary set must be "
                "other hosts than the primary set, or it cannot take over when a primary is down"
            )
        elif len(host_groups) > 1:
            problems.append(f"{host}: host is in two pools: {', '.join(host_groups)}")
        membership[host] = POOL_GROUPS[host_groups[0]]
    return membership


def _fleet_settings(hosts, hostvars, problems):
    """One value per setting; fleet-wide ones must agree on every host."""
    settings = {}
    for name, default in [*DEFAULTS.items(), ("mcfleet_tko", {})]:
        values = {}
        for host in hosts:
            value = _plain((hostvars.get(host) or {}).get(name, default))
            values.setdefault(repr(value), (value, []))[1].append(host)
        if not values:
            settings[name] = default
            continue
        # Per-host ports are allowed (several instances on one box); the model's
        # fleet value is the one most hosts use.
        settings[name] = max(values.values(), key=lambda item: (len(item[1]), repr(item[0])))[0]
        if name in FLEET_SETTINGS and len(values) > 1:
            described = "; ".join(
                f"{value} on {', '.join(hosts_with[:3])}"
                for value, (_value, hosts_with) in sorted(values.items())
            )
            problems.append(f"{name}: differs between hosts ({described}); it must be fleet-wide")
    return settings


def _plain(value):
    """Strip Ansible's tagged/lazy container types so the model is plain JSON data."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value):
    """A whole number written as text ('11', ' 11 ') is that number; anything else is kept as given."""
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
        return int(value)
    return value


_BOOLEAN_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _boolean(value):
    """'true'/'false' (and yes/no, on/off) written as text are booleans; anything else is kept."""
    if isinstance(value, str):
        return _BOOLEAN_WORDS.get(value.strip().lower(), value)
    return value


def _is_port(value):
    return _is_int(value) and 1 <= value <= 65535


def _datacentre_of(host, hvars, problems):
    datacentre = hvars.get("mcfleet_datacentre")
    if datacentre is None:
        problems.append(f"{host}: mcfleet_datacentre is missing")
        return None
    if not isinstance(datacentre, str) or not DATACENTRE_NAME.match(datacentre):
        problems.append(
            f"{host}: mcfleet_datacentre {datacentre!r} is not a datacentre name ([a-z][a-z0-9_]*)"
        )
        return None
    return str(datacentre)


def _address_of(host, hvars, problems):
    address = hvars.get("mcfleet_address")
    if address is None:
        problems.append(f"{host}: mcfleet_address is missing")
        return None
    try:
        return str(ipaddress.ip_address(str(address)))
    except ValueError:
        problems.append(f"{host}: mcfleet_address {address!r} is not an IP address")
        return None


def _release_of(host, hvars, problems):
    """The Debian release (codename) the host is expected to run, or None when not set."""
    release = _plain(hvars.get("mcfleet_release"))
    if release is None:
        return None
    if release not in RELEASES:
        problems.append(f"{host}: mcfleet_release {release!r} is not one of {', '.join(RELEASES)}")
        return None
    return release


def _port_of(host, hvars, name, default, problems):
    port = _number(_plain(hvars.get(name, default)))
    if not _is_port(port):
        problems.append(f"{host}: {name} {port!r} is not a TCP port (1..65535)")
        return None
    return port


def endpoint_text(address, port):
    """address:port as configs and messages write it, an IPv6 address in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _claim_endpoint(endpoints, address, port, host, problems):
    if address is None or port is None:
        return
    endpoint = (address, port)
    owner = endpoints.get(endpoint)
    if owner is None:
        endpoints[endpoint] = host
    elif owner != host:
        problems.append(
            f"{endpoint_text(address, port)}: duplicate host:port, used by both {owner} and {host}"
        )


def _tko(tko, problems):
    if not isinstance(tko, Mapping):
        problems.append(f"mcfleet_tko: {tko!r} is not a mapping")
        return dict(TKO_DEFAULTS)
    merged = dict(TKO_DEFAULTS)
    for key, value in tko.items():
        value = _number(value)
        if key not in TKO_DEFAULTS:
            problems.append(f"mcfleet_tko.{key}: unknown setting (known: {', '.join(TKO_DEFAULTS)})")
        elif not _is_int(value) or value <= 0:
            problems.append(f"mcfleet_tko.{key}: {value!r} is not a positive integer")
        else:
            merged[key] = value
    if merged["probe_timeout_initial_ms"] > merged["probe_timeout_max_ms"]:
        problems.append(
            f"mcfleet_tko.probe_timeout_initial_ms: {merged['probe_timeout_initial_ms']} is above "
            f"probe_timeout_max_ms {merged['probe_timeout_max_ms']}"
        )
    return merged


def _gutter_ttl(ttl, problems):
    low, high = GUTTER_TTL_RANGE
    if not _is_int(ttl):
        problems.append(f"mcfleet_gutter_ttl_s: {ttl!r} is not a whole number of seconds ({low}..{high})")
    elif not low <= ttl <= high:
        problems.append(f"mcfleet_gutter_ttl_s: {ttl!r} is out of range {low}..{high} seconds")
    return ttl


def _controller_addresses(addresses, problems):
    return _networks(addresses, "mcfleet_controller_addresses", problems)


def _networks(addresses, field, problems):
    """`addresses` (a list, or one address) as sorted unique CIDRs; each bad item is a problem."""
    if isinstance(addresses, str):
        addresses = [addresses]
    if not isinstance(addresses, list):
        problems.append(f"{field}: {addresses!r} is not a list of addresses")
        return []
    valid = []
    for address in addresses:
        try:
            valid.append(str(ipaddress.ip_network(str(address), strict=False)))
        except ValueError:
            problems.append(f"{field}: {address!r} is not an IP address or network")
    return sorted(set(valid))


def _slow_warmup(spec, problems):
    """mcrouter's slow warm-up settings, checked as mcrouter checks them, or None."""
    if spec is None:
        return None
    field = "mcfleet_mcrouter_slow_warmup"
    if not isinstance(spec, Mapping):
        problems.append(f"{field}: {spec!r} is not a mapping")
        return None
    unknown = sorted(set(spec) - set(SLOW_WARMUP_FIELDS))
    if unknown:
        problems.append(f"{field}: {', '.join(map(str, unknown))} not one of {', '.join(SLOW_WARMUP_FIELDS)}")
    settings = {}
    for name, low, high, open_ends, required in (
        ("enable_threshold", 0, 1, False, True),
        ("disable_threshold", 0, 1, False, True),
        ("start", 0, 1, True, False),
        ("step", 0, 100, True, False),
    ):
        value = _decimal(spec.get(name))
        if value is None and not required:
            continue
        in_range = isinstance(value, (int, float)) and not isinstance(value, bool)
        in_range = in_range and (low < value < high if open_ends else low <= value <= high)
        if not in_range:
            bounds = f"({low}, {high})" if open_ends else f"[{low}, {high}]"
            problems.append(f"{field}.{name}: {spec.get(name)!r} is not a number in {bounds}")
            continue
        settings[name] = value
    if settings.get("enable_threshold", 0) >= settings.get("disable_threshold", 1):
        problems.append(
            f"{field}: enable_threshold {settings['enable_threshold']!r} is not below "
            f"disable_threshold {settings['disable_threshold']!r}"
        )
    if spec.get("min_requests") is not None:
        requests = _number(spec["min_requests"])
        if not isinstance(requests, int) or isinstance(requests, bool) or requests < 1:
            problems.append(f"{field}.min_requests: {spec['min_requests']!r} is not a whole number above 0")
        else:
            settings["min_requests"] = requests
    return settings


def _decimal(value):
    """A number written as text ('0.7', from -e) is that number; anything else is kept."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _failover_errors(errors, problems):
    if not isinstance(errors, list) or not errors:
        problems.append(f"mcfleet_failover_errors: {errors!r} is not a non-empty list")
        return errors
    for error in errors:
        if error not in FAILOVER_ERRORS:
            problems.append(
                f"mcfleet_failover_errors: {error!r} is not an mcrouter failover error "
                f"({', '.join(FAILOVER_ERRORS)})"
            )
    return errors


def _add_remote_datacentres(datacentres, remote, tls_port, endpoints, problems):
    """Datacentres outside this inventory, reached only through their proxies."""
    if not isinstance(remote, Mapping):
        problems.append(f"mcfleet_remote_datacentres: {remote!r} is not a mapping")
        return
    for name, spec in sorted(remote.items()):
        field = f"mcfleet_remote_datacentres.{name}"
        if not isinstance(name, str) or not DATACENTRE_NAME.match(name):
            problems.append(f"{field}: {name!r} is not a datacentre name ([a-z][a-z0-9_]*)")
            continue
        if name in datacentres:
            problems.append(f"{field}: datacentre {name!r} is also in this inventory")
            continue
        if not isinstance(spec, Mapping):
            problems.append(f"{field}: {spec!r} is not a mapping with proxies_primary/proxies_secondary")
            continue
        unknown = sorted(set(spec) - {"proxies_primary", "proxies_secondary", "router_networks"})
        if unknown:
            problems.append(f"{field}: unknown keys {', '.join(unknown)}")
        dc = _new_datacentre(name, local=False)
        for pool in ("proxies_primary", "proxies_secondary"):
            entries = spec.get(pool) or []
            if not isinstance(entries, list):
                problems.append(f"{field}.{pool}: {entries!r} is not a list of addresses")
                continue
            for raw in entries:
                address = raw.get("address") if isinstance(raw, Mapping) else raw
                try:
                    address = str(ipaddress.ip_address(str(address)))
                except ValueError:
                    problems.append(f"{field}.{pool}: {address!r} is not an IP address")
                    continue
                host = str(raw.get("host", address)) if isinstance(raw, Mapping) else address
                dc[pool].append({"host": host, "address": address, "port": tls_port})
                if pool == "proxies_primary" or address not in {e["address"] for e in dc["proxies_primary"]}:
                    _claim_endpoint(endpoints, address, tls_port, f"{name} {pool} {host}", problems)
        if "router_networks" in spec:
            dc["router_networks"] = _networks(spec["router_networks"], f"{field}.router_networks", problems)
        if not dc["proxies_primary"]:
            problems.append(f"{field}.proxies_primary: empty, so routes to {name} lead nowhere")
        primary = {entry["address"] for entry in dc["proxies_primary"]}
        overlap = sorted(entry["address"] for entry in dc["proxies_secondary"] if entry["address"] in primary)
        if overlap:
            problems.append(
                f"{field}.proxies_secondary: {', '.join(overlap)} also in proxies_primary; the secondary "
                "set must be other hosts than the primary set"
            )
        datacentres[name] = dc


def _check_pools(datacentres, routers, problems):
    for name, dc in sorted(datacentres.items()):
        if not dc["local"]:
            continue
        if dc["main"] and not dc["gutter"]:
            problems.append(
                f"datacentre {name}: gutter pool (memcached_gutter) is empty "
                f"while the main pool has {len(dc['main'])} shards"
            )
        if dc["proxies_secondary"] and not dc["proxies_primary"]:
            problems.append(f"datacentre {name}: proxies_secondary without any proxies_primary")
    for host, router in sorted(routers.items()):
        dc = datacentres.get(router["datacentre"])
        if dc is None or not (dc["main"] or dc["gutter"]):
            problems.append(
                f"{host}: mcfleet_datacentre {router['datacentre']!r} routes to an unknown datacentre "
                "(no memcached_main or memcached_gutter hosts there)"
            )
        elif not dc["main"]:
            kind = "router" if router["role"] == "router" else "proxy"
            problems.append(
                f"{host}: {kind} has no pools: datacentre {router['datacentre']!r} "
                "has no memcached_main shards"
            )


def _shadow(spec, datacentres, hosts, memcached_port, problems):
    """The shadow section: which main shard's traffic is copied, to which spare servers,
    for which fraction of its keys, by which routers (mcrouter's PoolRoute `shadows`,
    https://github.com/facebook/mcrouter/wiki/Shadowing-setup)."""
    if spec in (None, {}):
        return None
    field = "mcfleet_shadow"
    if not isinstance(spec, Mapping):
        problems.append(f"{field}: {spec!r} is not a mapping with shard, candidates, key_fraction, routers")
        return None
    count = len(problems)
    unknown = sorted(set(spec) - set(SHADOW_KEYS))
    if unknown:
        problems.append(
            f"{field}: unknown keys {', '.join(map(str, unknown))} (known: {', '.join(SHADOW_KEYS)})"
        )
    shard = spec.get("shard")
    shard_host = hosts.get(shard) if isinstance(shard, str) else None
    if shard_host is None or shard_host["pool"] != "main":
        problems.append(f"{field}.shard: {shard!r} is not a main shard (memcached_main) of this inventory")
        return None
    datacentre = shard_host["datacentre"]
    main = [entry["host"] for entry in datacentres[datacentre]["main"]]
    candidates = _shadow_candidates(spec.get("candidates"), hosts, memcached_port, problems)
    key_fraction = _key_fraction(spec.get("key_fraction", [0.0, 1.0]), problems)
    local_routers = sorted(entry["host"] for entry in datacentres[datacentre]["routers"])
    routers = spec.get("routers", local_routers)
    if not isinstance(routers, list) or not routers:
        problems.append(f"{field}.routers: {routers!r} is not a non-empty list of routers")
    else:
        for router in routers:
            if router not in local_routers:
                problems.append(
                    f"{field}.routers: {router!r} is not a router (routers group) of {shard}'s "
                    f"datacentre {datacentre} ({', '.join(local_routers) or 'none'})"
                )
    if len(problems) > count:
        return None
    return {
        "shard": shard,
        "datacentre": datacentre,
        "shard_index": main.index(shard),
        "shard_count": len(main),
        "candidates": candidates,
        "key_fraction": key_fraction,
        "routers": sorted(set(routers)),
    }


def _shadow_candidates(candidates, hosts, memcached_port, problems):
    field = "mcfleet_shadow.candidates"
    if not isinstance(candidates, list) or not candidates:
        problems.append(f"{field}: {candidates!r} is not a non-empty list of {{host, address, port}}")
        return []
    by_address = {}
    for name, entry in hosts.items():
        by_address.setdefault(entry["address"], []).append(f"{name} ({entry['pool']})")
    valid, seen = [], set()
    for index, raw in enumerate(candidates):
        at = f"{field}[{index}]"
        if not isinstance(raw, Mapping):
            problems.append(f"{at}: {raw!r} is not a mapping with host, address, port")
            continue
        name, port = raw.get("host"), _number(raw.get("port", memcached_port))
        if not isinstance(name, str) or not CANDIDATE_NAME.match(name):
            problems.append(f"{at}.host: {name!r} is not a host name ([A-Za-z0-9][A-Za-z0-9_.-]*)")
            continue
        if name in hosts:
            problems.append(
                f"{at}.host: {name!r} is a production host ({hosts[name]['pool']}): "
                "a shadow target must be a spare server"
            )
            continue
        try:
            address = str(ipaddress.ip_address(str(raw.get("address"))))
        except ValueError:
            problems.append(f"{at}.address: {raw.get('address')!r} is not an IP address")
            continue
        if address in by_address:
            problems.append(
                f"{at}.address: {address} is production host {', '.join(by_address[address])}: "
                "a shadow target must be a spare server"
            )
            continue
        if not _is_port(port):
            problems.append(f"{at}.port: {port!r} is not a TCP port (1..65535)")
            continue
        if name in seen or (address, port) in seen:
            problems.append(f"{at}: {name} {address}:{port} is listed twice")
            continue
        seen.update({name, (address, port)})
        valid.append({"host": name, "address": address, "port": port})
    return valid


def _key_fraction(value, problems):
    field = "mcfleet_shadow.key_fraction"
    numbers = [_number(v) for v in value] if isinstance(value, list) else None
    if (
        numbers is None
        or len(numbers) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers)
        or not 0 <= numbers[0] < numbers[1] <= 1
    ):
        problems.append(f"{field}: {value!r} is not [from, to] with 0 <= from < to <= 1")
        return [0.0, 1.0]
    return [float(numbers[0]), float(numbers[1])]


def _tls(settings, cross_dc_tls, datacentres, routers, problems):
    """The cross-datacentre TLS settings; with TLS on, every peer needs its certificate and key.

    A proxy serves TLS to the other datacentres; a router or proxy dials TLS when another
    datacentre has proxies. Their files are controller paths, checked for existence, key
    match and expiry by the cross_dc_tls role's controller check (this model reads no files).
    """
    base = _number(settings["mcfleet_tls_tunnel_base_port"])
    proxies = sum(len(dc["proxies_primary"]) + len(dc["proxies_secondary"]) for dc in datacentres.values())
    if not _is_int(base) or not 1024 <= base <= 65535 - proxies:
        problems.append(
            f"mcfleet_tls_tunnel_base_port: {base!r} is not a port from 1024 that leaves room for "
            f"{proxies} tunnels below 65536"
        )
        base = DEFAULTS["mcfleet_tls_tunnel_base_port"]
    ca_file = settings["mcfleet_tls_ca_file"]
    tls = {"ca_file": ca_file, "paths": dict(TLS_PATHS), "tunnel_base_port": base}
    if not cross_dc_tls:
        for router in routers.values():
            router["tls_files"] = None
        return tls
    needing = _tls_peers(datacentres, routers)
    if needing and not _is_absolute_path(ca_file):
        problems.append(
            f"mcfleet_tls_ca_file: {ca_file!r} is not an absolute path to the CA certificate on the "
            f"controller, and mcfleet_cross_dc_tls is true (TLS peers: {', '.join(needing[:3])})"
        )
    for host, router in sorted(routers.items()):
        if host not in needing:
            router["tls_files"] = None
            continue
        for kind in ("cert", "key"):
            path = router["tls_files"][kind]
            if path is None or path == "":
                problems.append(
                    f"{host}: mcfleet_tls_{kind}_file is missing, and mcfleet_cross_dc_tls is true "
                    f"(this {'router dials' if router['role'] == 'router' else 'proxy serves'} TLS)"
                )
            elif not _is_absolute_path(path):
                problems.append(
                    f"{host}: mcfleet_tls_{kind}_file {path!r} is not an absolute path on the controller"
                )
    return tls


def _tls_peers(datacentres, routers):
    """Routers and proxies that serve or dial cross-datacentre TLS, sorted."""
    with_proxies = {name for name, dc in datacentres.items() if dc["proxies_primary"]}
    return sorted(
        host
        for host, router in routers.items()
        if router["role"] != "router" or with_proxies - {router["datacentre"]}
    )


def _is_absolute_path(value):
    return isinstance(value, str) and value.startswith("/")


def _assign_tunnel_ports(datacentres, base):
    """Give every proxy a fleet-wide tunnel port (base + its index in datacentre, set, host order)."""
    index = 0
    for _name, dc in sorted(datacentres.items()):
        for pool in ("proxies_primary", "proxies_secondary"):
            for entry in dc[pool]:
                entry["tunnel_port"] = base + index
                index += 1
