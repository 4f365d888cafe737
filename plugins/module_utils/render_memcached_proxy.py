"""Render a router's memcached built-in proxy (routelib Lua) configuration from the topology model.

Same intent as the mcrouter configuration (render_mcrouter.py), for a router in datacentre L:
  /L/mw/KEY      shard KEY over L's main pool; on a failed shard fall over to L's gutter,
                 where set-like writes get the gutter TTL (route_ttl)
  /L/mw-wan/KEY  the same, set and delete through route_allsync
  /R/mw/KEY      R's primary proxies, then its secondary proxies (or R's main pool)
  /R/mw-wan/KEY  the same, set and delete fire-and-forget (routelib's allasync)
  /*/mw-wan/KEY  set and delete: L synchronously, every other datacentre asynchronously
  KEY            (no routing prefix) as /L/mw/KEY, like mcrouter's --route-prefix
Keys reach memcached without their routing prefix, as mcrouter stores them.

With a shadow in the model (topology.py `shadow`), the routers it names wrap L's local
route in routelib's `route_split`: the client gets the local route's answer, and a copy
goes, in the background, through `route_mcfleet_shadow` (routes.lua) to the candidates.
memcached 1.6.38's proxy gives Lua no way to ask which pool member a key hashes to, so
the copy cannot pick exactly the shard's keys as mcrouter's `index_range` does: it takes
a key fraction of L's whole main traffic the size of one shard's share, i.e. the model's
key fraction divided by the number of main shards. Every candidate gets the same keys, so
candidates compare with each other exactly (the lab copies a production-shaped twin of
the shard too).

Cross-datacentre TLS (`cross_dc_tls`): Debian's memcached (trixie, 1.6.38) is built without
--enable-proxy-tls, so its proxy cannot dial TLS backends (memcached's configure.ac; Debian's
debian/rules). A proxy serves TLS itself on its cross-datacentre port (memcached's own TLS
listener, `-Z`), and a router reaches each remote proxy through a local TLS client tunnel
(stunnel, set up by the cross_dc_tls role) on 127.0.0.1:<the proxy's tunnel_port>.

memcached loads two Lua files: the route handlers routelib lacks (routes.lua, shipped as
a file by the memcached_proxy role and loaded after routelib via `proxy_config`, because
memcached runs `proxy_arg` only in its configuration thread) and the rendered per-host
config (`proxy_arg`).
"""

# One set of names: on the host, in render.yml's output and in the golden files.
CONFIG_NAME = "proxy.lua"
LIBRARY_NAME = "routes.lua"
CONFIG_PATH = f"/etc/mcfleet/{CONFIG_NAME}"
LIBRARY_PATH = f"/etc/mcfleet/{LIBRARY_NAME}"
# routes.lua's failover journal: the keys written or deleted on the gutter in a shard's place.
JOURNAL_DIRECTORY = "/var/lib/mcfleet-router"
JOURNAL_PATH = f"{JOURNAL_DIRECTORY}/failover.journal"
# How long a key the gutter took a write for stays on the gutter (routes.lua's
# route_mcfleet_failover). It must outlast the time from a write journalled after the window's
# invalidate pass to its deletion by the follower, which starts at the unblock (2-3 s later on
# the lab, measured in the maintenance reports' step times); while it lasts, the key's reads
# miss once the gutter TTL has expired it, so it is not longer than it needs to be by much.
FENCE_S = 30


def pool_names(datacentre):
    return {
        "main": f"{datacentre}_main",
        "gutter": f"{datacentre}_gutter",
        "proxies_primary": f"{datacentre}_proxies",
        "proxies_secondary": f"{datacentre}_proxies_secondary",
    }


def backend_settings(model):
    """Proxy backend health settings derived from the TKO settings (mcrouter's flags).

    server_timeout bounds connect and read, so a DROPped shard costs at most
    timeouts_until_tko * server_timeout before failover; a down backend is retried after
    the initial probe delay, and one that fails again soon after is backed off towards
    the maximum probe delay.
    """
    tko = model["tko"]
    return {
        "backend_connect_timeout": tko["server_timeout_ms"] / 1000,
        "backend_read_timeout": tko["server_timeout_ms"] / 1000,
        "backend_failure_limit": tko["timeouts_until_tko"],
        # Whole seconds, at least 1: the proxy's retry wait has one-second resolution.
        "backend_retry_waittime": max(1, tko["probe_timeout_initial_ms"] // 1000),
        "backend_flap_time": max(1, tko["probe_timeout_initial_ms"] // 1000),
        "backend_flap_backoff_ramp": 1.5,
        "backend_flap_backoff_max": max(1, tko["probe_timeout_max_ms"] // 1000),
    }


def command_line_options(model, router_host, config_path=CONFIG_PATH, library_path=LIBRARY_PATH):
    """memcached arguments that make it this host's proxy (listen port(s) and the Lua files)."""
    router = model["routers"][router_host]
    serves_tls = router["cross_dc_port"] is not None and model["cross_dc_tls"]
    address = f"[{router['address']}]" if ":" in router["address"] else router["address"]
    # With TLS on (-Z) every listener is TLS unless marked notls: (memcached's doc/protocol.txt, "-Z").
    listeners = [f"{'notls:' if serves_tls else ''}{address}:{router['port']}"]
    if router["role"] == "router" and not router["address"].startswith("127."):
        # App-server clients (and a drill's or maintenance's client placed there) use loopback.
        listeners.append(f"127.0.0.1:{router['port']}")
    if router["cross_dc_port"] is not None:
        listeners.append(f"{address}:{router['cross_dc_port']}")
    options = ["-l", ",".join(listeners)]
    if serves_tls:
        paths = model["tls"]["paths"]
        # Mutual TLS: ssl_verify_mode=2 ("Require", memcached -h) refuses a client without a
        # certificate of ssl_ca_cert's CA; the routers' tunnels present theirs.
        options += [
            "-Z",
            "-o",
            f"ssl_chain_cert={paths['cert']},ssl_key={paths['key']},ssl_ca_cert={paths['ca']},"
            "ssl_verify_mode=2",
        ]
    return [*options, "-o", f"proxy_config=routelib:{library_path},proxy_arg={config_path}"]


def tls_tunnels(model, router_host):
    """[{name, accept_port, address, port}]: local TLS tunnels `router_host` reaches remote proxies by."""
    if not model["cross_dc_tls"]:
        return []
    local = model["routers"][router_host]["datacentre"]
    tunnels = []
    for name, dc in model["datacentres"].items():
        if name == local:
            continue
        for pool in ("proxies_primary", "proxies_secondary"):
            for entry in dc[pool]:
                tunnels.append(
                    {
                        "name": entry["host"],
                        "accept_port": entry["tunnel_port"],
                        "address": entry["address"],
                        "port": entry["port"],
                    }
                )
    return tunnels


def shadow_pool_name(datacentre, candidate):
    return f"{datacentre}_shadow_{candidate['host']}"


def shadow_key_fraction(shadow):
    """One shard's share of the model's key fraction (see the module's docstring)."""
    low, high = shadow["key_fraction"]
    return [low, round(low + (high - low) / shadow["shard_count"], 6)]


def _shadow_of(model, router_host):
    shadow = model.get("shadow")
    return shadow if shadow and router_host in shadow["routers"] else None


def render_config_text(model, router_host):
    router = model["routers"][router_host]
    local = router["datacentre"]
    shadow = _shadow_of(model, router_host)
    datacentres = model["datacentres"]
    others = [name for name in datacentres if name != local]
    lines = [
        f"-- mcfleet: memcached proxy (routelib) configuration for {router_host}, datacentre {local}.",
        "-- Rendered from the topology model (plugins/module_utils/render_memcached_proxy.py); do not edit.",
        "",
        "-- Backend health from the TKO settings (see backend_settings()).",
        "settings{",
    ]
    for name, value in backend_settings(model).items():
        lines.append(f"    {name} = {_lua_number(value)},")
    lines += ["}", "", "pools{"]
    lines += _pool_lines(pool_names(local)["main"], datacentres[local]["main"])
    lines += _pool_lines(pool_names(local)["gutter"], datacentres[local]["gutter"])
    for candidate in shadow["candidates"] if shadow else []:
        lines += _pool_lines(shadow_pool_name(local, candidate), [candidate])
    cross_dc_options = _cross_dc_backend_options(model)
    tunnel = model["cross_dc_tls"]
    if tunnel and any(datacentres[name]["proxies_primary"] for name in others):
        lines.append("    -- Remote proxies through this host's TLS tunnels (stunnel on 127.0.0.1).")
    for name in others:
        dc, names = datacentres[name], pool_names(name)
        if dc["proxies_primary"]:
            lines += _pool_lines(names["proxies_primary"], dc["proxies_primary"], cross_dc_options, tunnel)
            if dc["proxies_secondary"]:
                lines += _pool_lines(
                    names["proxies_secondary"], dc["proxies_secondary"], cross_dc_options, tunnel
                )
        else:
            lines += _pool_lines(names["main"], dc["main"], cross_dc_options)
    lines += ["}", ""]

    # routelib configures each route object once, so every use calls a constructor.
    lines += _local_route_lines(model, local, shadow)
    for name in others:
        lines += _remote_route_lines(name, datacentres[name])
    lines += [
        "routes{",
        "    -- The router matches /<datacentre>/; route_mcfleet_prefix strips /<datacentre>/<cluster>/.",
        '    conf = { mode = "anchor", start = "/", stop = "/" },',
        "    map = {",
        f"        {_lua_key(local)} = route_mcfleet_prefix{{ children = {{",
        "            mw = local_failover(),",
        '            ["mw-wan"] = route_mcfleet_operation{',
        "                child_default = local_failover(),",
        "                child_set = route_allsync{ children = { local_failover() } },",
        "                child_delete = route_allsync{ children = { local_failover() } },",
        "            },",
        "        } },",
    ]
    for name in others:
        function = _remote_function(name)
        lines += [
            f"        {_lua_key(name)} = route_mcfleet_prefix{{ children = {{",
            f"            mw = {function}(),",
            '            ["mw-wan"] = route_mcfleet_operation{',
            f"                child_default = {function}(),",
            f"                child_set = route_allasync{{ children = {{ {function}() }} }},",
            f"                child_delete = route_allasync{{ children = {{ {function}() }} }},",
            "            },",
            "        } },",
        ]
    lines += _broadcast_lines(others)
    lines += [
        "    },",
        "    -- Keys without a routing prefix belong to this datacentre (mcrouter's --route-prefix).",
        "    default = local_failover(),",
        "}",
        "",
    ]
    return "\n".join(lines)


def _local_route_lines(model, local, shadow):
    names = pool_names(local)
    journal = f'route_mcfleet_journal{{ path = "{JOURNAL_PATH}", child = '
    gutter_with_ttl = f'route_ttl{{ ttl = {model["gutter_ttl_s"]}, child = "{names["gutter"]}" }}'
    failover = [
        "route_mcfleet_operation{",
        "    child_default = route_mcfleet_failover{",
        f'        child_primary = "{names["main"]}",',
        f'        child_gutter = {journal}"{names["gutter"]}" }},',
        f"        fence_s = {FENCE_S},",
        "    },",
        "    child_set = route_mcfleet_failover{",
        f'        child_primary = "{names["main"]}",',
        f"        child_gutter = {journal}{gutter_with_ttl} }},",
        f"        fence_s = {FENCE_S},",
        "    },",
        "}",
    ]
    lines = [
        f"-- {model['datacentres'][local]['route_prefix']}: main pool, failing over to the gutter pool;"
        " set-like",
        f"-- writes to the gutter expire after the gutter TTL ({model['gutter_ttl_s']} s). Every write or",
        "-- delete the gutter takes is journalled, for the failed shard's stale-safe return, and fences",
        f"-- its key on the gutter for {FENCE_S} s (no read meets the shard's older copy after it returns).",
    ]
    if not shadow:
        body = ["return " + failover[0], *failover[1:]]
    else:
        fraction = shadow_key_fraction(shadow)
        targets = [f'"{shadow_pool_name(local, c)}"' for c in shadow["candidates"]]
        child = (
            targets[0] if len(targets) == 1 else f"route_allsync{{ children = {{ {', '.join(targets)} }} }}"
        )
        lines += [
            f"-- Shadow: a copy of one shard's share of this traffic ({shadow['shard']}'s; key fraction",
            f"-- {_lua_number(fraction[0])}..{_lua_number(fraction[1])}) goes to "
            + ", ".join(c["host"] for c in shadow["candidates"])
            + "; their replies are discarded.",
        ]
        body = [
            "return route_split{",
            "    child_a = " + failover[0],
            *("    " + line for line in failover[1:-1]),
            "    },",
            "    child_b = route_mcfleet_shadow{",
            f"        key_fraction = {{ {_lua_number(fraction[0])}, {_lua_number(fraction[1])} }},",
            f"        child = {child},",
            "    },",
            "}",
        ]
    return [*lines, "local function local_failover()", *("    " + line for line in body), "end", ""]


def _broadcast_lines(others):
    """/*/mw-wan/: set and delete wait for this datacentre, and go to the others without waiting."""
    if others:
        remote = ", ".join(f"{_remote_function(name)}()" for name in others)
        replicate = [
            "route_split{",
            "                child_a = route_allsync{ children = { local_failover() } },",
            f"                child_b = route_allasync{{ children = {{ {remote} }} }},",
            "            }",
        ]
    else:
        replicate = ["route_allsync{ children = { local_failover() } }"]
    lines = [
        '        ["*"] = route_mcfleet_prefix{ children = {',
        '            ["mw-wan"] = route_mcfleet_operation{',
        "                child_default = local_failover(),",
    ]
    for operation in ("set", "delete"):
        lines.append(f"                child_{operation} = " + "\n    ".join(replicate) + ",")
    lines += ["            },", "        } },"]
    return lines


def _remote_function(name):
    return f"route_to_{name}"


def _remote_route_lines(name, dc):
    names = pool_names(name)
    if dc["proxies_primary"] and dc["proxies_secondary"]:
        comment = f"-- {dc['route_prefix']}: {name}'s primary proxies, failing over to its secondary proxies."
        body = (
            f'    return route_failover{{ children = {{ "{names["proxies_primary"]}", '
            f'"{names["proxies_secondary"]}" }} }}'
        )
    elif dc["proxies_primary"]:
        comment = f"-- {dc['route_prefix']}: {name}'s proxies."
        body = f'    return route_direct{{ child = "{names["proxies_primary"]}" }}'
    else:
        comment = f"-- {dc['route_prefix']}: {name}'s main pool (no proxies declared)."
        body = f'    return route_direct{{ child = "{names["main"]}" }}'
    return [comment, f"local function {_remote_function(name)}()", body, "end", ""]


def _cross_dc_backend_options(model):
    timeout = _lua_number(model["tko"]["cross_region_timeout_ms"] / 1000)
    return f"connecttimeout = {timeout}, readtimeout = {timeout}"


def _pool_lines(name, entries, backend_options=None, through_tunnel=False):
    lines = [f"    {_lua_key(name)} = {{"]
    if backend_options:
        lines.append(f"        backend_options = {{ {backend_options} }},")
    lines.append("        backends = {")
    for entry in entries:
        host, port = (
            ("127.0.0.1", entry["tunnel_port"]) if through_tunnel else (entry["address"], entry["port"])
        )
        backend = f'host = "{host}", port = {port}, label = "{entry["host"]}"'
        lines.append(f"            {{ {backend} }},")
    lines += ["        },", "    },"]
    return lines


def _lua_key(name):
    # Always bracketed: a datacentre could be named like a Lua keyword.
    return f'["{name}"]'


def _lua_number(value):
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if value >= 1 else repr(value)
    return repr(value)
