"""Render a router's mcrouter configuration (Wikimedia's shape) and flags from the topology model.

For a router in datacentre L:
  /L/mw/        FailoverWithExptimeRoute: main pool, then the gutter pool with the gutter TTL;
                with mcfleet_mcrouter_slow_warmup, the main PoolRoute's `slow_warmup` sends
                part of a cold shard's gets to the gutter pool (mcrouter/routes/PoolRouteUtils.h)
  /L/mw-wan/    OperationSelectorRoute: set and delete through AllSyncRoute over that route
  /R/mw/        another datacentre R: its primary proxies, failing over to its secondary
                proxies (both on the cross-datacentre TLS port); without proxies, R's main pool
  /R/mw-wan/    OperationSelectorRoute: set and delete through AllAsyncRoute over that route
With a shadow in the model (topology.py `shadow`), the routers it names send a copy of the
shard's traffic to the candidate servers: L's main PoolRoute carries `shadows`, one per
candidate, with `index_range` [i, i+1) (the shard's position in the pool; the end is not
included) and `key_fraction_range` (https://github.com/facebook/mcrouter/wiki/Shadowing-setup).
Proxies render the same configuration as a router of their datacentre: what reaches them
from another datacentre has had its routing prefix stripped, so it takes the default
route (`--route-prefix`), which is the local failover route.
"""

import json

# Handles this renderer emits, with the fields each one needs (the structural test
# walks every rendered config against this table).
ROUTE_HANDLE_FIELDS = {
    "PoolRoute": ("pool",),
    "FailoverRoute": ("children",),
    "FailoverWithExptimeRoute": ("normal", "failover", "failover_exptime", "failover_errors"),
    "OperationSelectorRoute": ("default_policy", "operation_policies"),
    "AllSyncRoute": ("children",),
    "AllAsyncRoute": ("children",),
}
# Operations replicated by the broadcast prefix (WANObjectCache purges are sets/deletes).
BROADCAST_OPERATIONS = ("delete", "set")

CONFIG_NAME = "config.json"
CONFIG_PATH = f"/etc/mcrouter/{CONFIG_NAME}"


def server_string(entry, security):
    """mcrouter's `host:port:protocol:security`; IPv6 addresses are bracketed."""
    address = entry["address"]
    if ":" in address:
        address = f"[{address}]"
    return f"{address}:{entry['port']}:ascii:{security}"


def pool_names(datacentre):
    return {
        "main": datacentre,
        "gutter": f"{datacentre}-gutter",
        "proxies_primary": f"{datacentre}-proxies",
        "proxies_secondary": f"{datacentre}-proxies-secondary",
    }


def render_config(model, router_host):
    """The config of `router_host` as a dict (see `render_config_text` for the file)."""
    local = model["routers"][router_host]["datacentre"]
    cross_dc_security = "ssl" if model["cross_dc_tls"] else "plain"
    pools = {}
    routes = []
    for name, dc in model["datacentres"].items():
        names = pool_names(name)
        if name == local:
            pools[names["main"]] = _pool(dc["main"], "plain")
            pools[names["gutter"]] = _pool(dc["gutter"], "plain")
            route = {
                "type": "FailoverWithExptimeRoute",
                "normal": _main_route(model, router_host, names, pools),
                "failover": f"PoolRoute|{names['gutter']}",
                "failover_exptime": model["gutter_ttl_s"],
                "failover_errors": list(model["failover_errors"]),
            }
            replicate = "AllSyncRoute"
        else:
            route = _remote_route(dc, names, pools, cross_dc_security)
            replicate = "AllAsyncRoute"
        routes.append((name != local, name, dc, route, replicate))
    rendered_routes = []
    for _remote, _name, dc, route, replicate in sorted(routes, key=lambda item: item[:2]):
        rendered_routes.append({"aliases": [dc["route_prefix"]], "route": route})
        rendered_routes.append(
            {
                "aliases": [dc["broadcast_prefix"]],
                "route": {
                    "type": "OperationSelectorRoute",
                    "default_policy": route,
                    "operation_policies": {
                        operation: {"type": replicate, "children": [route]}
                        for operation in BROADCAST_OPERATIONS
                    },
                },
            }
        )
    return {"pools": dict(sorted(pools.items())), "routes": rendered_routes}


def render_config_text(model, router_host):
    """Deterministic JSON text: sorted keys, stable route order, trailing newline."""
    return json.dumps(render_config(model, router_host), indent=2, sort_keys=True) + "\n"


def command_line_flags(model, router_host, config_path=CONFIG_PATH, tls_paths=None):
    """mcrouter's flags for `router_host`, every value taken from the model.

    `tls_paths` ({cert, key, ca}; the model's `tls.paths` by default) is used when the
    fleet talks TLS across datacentres and this host takes part (its `tls_files` is set):
    every such router presents its certificate and checks its peers against the CA when it
    dials a remote proxy's `ssl` servers, and a proxy also listens with TLS on the
    cross-datacentre port. Flags as in mcrouter's mcrouter_options.h (ssl_port,
    pem_cert_path, pem_key_path, pem_ca_path) and Wikimedia's operations-puppet
    modules/mcrouter (the Mcrouter::Ssl type).
    """
    router = model["routers"][router_host]
    tko = model["tko"]
    flags = [
        f"--port={router['port']}",
        f"--config=file:{config_path}",
        f"--route-prefix={model['datacentres'][router['datacentre']]['route_prefix']}",
        "--send-invalid-route-to-default",
        "--num-proxies=1",
        f"--server-timeout={tko['server_timeout_ms']}",
        f"--cross-region-timeout-ms={tko['cross_region_timeout_ms']}",
        f"--cross-cluster-timeout-ms={tko['cross_cluster_timeout_ms']}",
        f"--timeouts-until-tko={tko['timeouts_until_tko']}",
        f"--probe-timeout-initial={tko['probe_timeout_initial_ms']}",
        f"--probe-timeout-max={tko['probe_timeout_max_ms']}",
    ]
    if not (model["cross_dc_tls"] and router.get("tls_files")):
        return flags
    tls_paths = tls_paths or model["tls"]["paths"]
    if router["cross_dc_port"] is not None:
        # A proxy requires the other side's certificate too (mcrouter_standalone_options.h,
        # ssl_require_peer_certs): a client without one from the CA is refused.
        flags += [f"--ssl-port={router['cross_dc_port']}", "--ssl-require-peer-certs"]
    flags += [
        f"--pem-cert-path={tls_paths['cert']}",
        f"--pem-key-path={tls_paths['key']}",
        f"--pem-ca-path={tls_paths['ca']}",
    ]
    return flags


def shadow_pool_name(datacentre, candidate):
    return f"{datacentre}-shadow-{candidate['host']}"


def _main_route(model, router_host, names, pools):
    """The local main pool, with the model's shadow when this router sends it and the model's
    slow warm-up (a cold shard's gets go partly to the gutter pool until its hit ratio is back)."""
    main_pool = names["main"]
    shadow = model.get("shadow")
    route = {"type": "PoolRoute", "pool": main_pool}
    if model.get("slow_warmup"):
        gutter = f"PoolRoute|{names['gutter']}"
        route["slow_warmup"] = {"failoverTarget": gutter, "settings": model["slow_warmup"]}
    if not shadow or router_host not in shadow["routers"]:
        return route if len(route) > 2 else f"PoolRoute|{main_pool}"
    shadows = []
    for candidate in shadow["candidates"]:
        name = shadow_pool_name(shadow["datacentre"], candidate)
        pools[name] = _pool([candidate], "plain")
        shadows.append(
            {
                "target": f"PoolRoute|{name}",
                "index_range": [shadow["shard_index"], shadow["shard_index"] + 1],
                "key_fraction_range": list(shadow["key_fraction"]),
            }
        )
    return {**route, "shadows": shadows}


def _pool(entries, security):
    return {"servers": [server_string(entry, security) for entry in entries]}


def _remote_route(dc, names, pools, cross_dc_security):
    if dc["proxies_primary"]:
        pools[names["proxies_primary"]] = _pool(dc["proxies_primary"], cross_dc_security)
        if not dc["proxies_secondary"]:
            return f"PoolRoute|{names['proxies_primary']}"
        pools[names["proxies_secondary"]] = _pool(dc["proxies_secondary"], cross_dc_security)
        return {
            "type": "FailoverRoute",
            "children": [f"PoolRoute|{names['proxies_primary']}", f"PoolRoute|{names['proxies_secondary']}"],
        }
    # A datacentre of this inventory without proxies: straight to its shards.
    pools[names["main"]] = _pool(dc["main"], "plain")
    return f"PoolRoute|{names['main']}"
