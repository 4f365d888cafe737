"""Which server holds a key, without a running router: the routes a request takes and where it lands.

Input is one router's rendered configuration (mcrouter JSON, or the memcached proxy's
routelib Lua that render_memcached_proxy.py writes) or the topology model and a router
host (then the router's configuration is rendered here, and a request handed to another
datacentre's proxy is followed into that proxy's own configuration).

What is explained is what render_mcrouter.py, render_memcached_proxy.py and
roles/memcached_proxy/files/routes.lua build, as each engine runs it:
  mcrouter   routing prefix /region/cluster/ and the `|#|` hash stop (facebook/mcrouter
             mcrouter/lib/carbon/Keys-inl.h); routes by alias, `/*/` wildcards, keys
             without a prefix to the --route-prefix route, unknown prefixes there too
             (--send-invalid-route-to-default, mcrouter/routes/RouteHandleMap-inl.h);
             PoolRoute (Ch3), FailoverRoute, FailoverWithExptimeRoute,
             OperationSelectorRoute, AllSyncRoute, AllAsyncRoute.
  proxy      routes{ mode = "anchor", start = "/", stop = "/" } (memcached 1.6.38
             proxy_luafgen.c mcp_funcgen_route: an unknown /segment/ takes `default`),
             route_mcfleet_prefix, route_mcfleet_operation, route_mcfleet_journal and
             route_mcfleet_failover (routes.lua), routelib's
             route_failover, route_ttl, route_allsync, route_allasync, route_split,
             route_direct (memcached/memcached-vendor routelib/routelib.lua), pools
             placed by XXH3 and jump hash.
A blocked server (a host name or address:port) answers with an error, as a shard cut off
by mcfleet.fleet.shard_block does once the router holds it as bad: failover routes then
take their next child.
"""

import json
import re

from ansible_collections.mcfleet.fleet.plugins.module_utils import route_hashing
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import endpoint_text

ENGINES = ("mcrouter", "memcached_proxy")
# memcached's KEY_MAX_LENGTH (memcached.h); mcrouter refuses longer keys too.
MAX_KEY_LENGTH = 250
CLASSIC_OPERATIONS = (
    "get",
    "gets",
    "set",
    "add",
    "replace",
    "append",
    "prepend",
    "cas",
    "delete",
    "incr",
    "decr",
    "touch",
    "gat",
    "gats",
)
META_OPERATIONS = ("mg", "ms", "md", "ma")
OPERATIONS = CLASSIC_OPERATIONS + META_OPERATIONS
# routes.lua's route_mcfleet_operation (and routelib's route_ttl) sorting of commands.
PROXY_SET_LIKE = frozenset({"set", "add", "cas", "ms"})
PROXY_DELETE_LIKE = frozenset({"delete", "md"})
# What routes.lua's route_mcfleet_journal does not record.
PROXY_READS = frozenset({"get", "gets", "mg"})
# mcrouter's hash stop: only the part before it is hashed.
HASH_STOP = "|#|"
# A proxy that hands a request on to another datacentre's proxy: at most this many hops.
MAX_HOPS = 3


class ExplainError(ValueError):
    """Bad input or a configuration the explainer cannot follow; names the field and the value."""


# Input checks -------------------------------------------------------------------------


def check_key(key):
    """The key as bytes, or ExplainError: memcached's text protocol limits what a key can be."""
    if not isinstance(key, (str, bytes)):
        raise ExplainError(f"key={key!r}: must be a string")
    raw = key.encode("utf-8") if isinstance(key, str) else key
    if not raw:
        raise ExplainError("key='': a key needs at least one byte")
    if len(raw) > MAX_KEY_LENGTH:
        raise ExplainError(
            f"key={_shown(raw)}: {len(raw)} bytes, more than memcached's {MAX_KEY_LENGTH}-byte limit"
        )
    bad = next((byte for byte in raw if byte <= 0x20 or byte == 0x7F), None)
    if bad is not None:
        what = "a space" if bad == 0x20 else f"the control character 0x{bad:02x}"
        raise ExplainError(f"key={_shown(raw)}: contains {what}, which memcached's protocol does not allow")
    return raw


def check_operation(operation, engine):
    if operation not in OPERATIONS:
        raise ExplainError(f"operation={operation!r}: not one of {', '.join(OPERATIONS)}")
    if engine == "mcrouter" and operation in META_OPERATIONS:
        raise ExplainError(f"operation={operation!r}: mcrouter does not speak memcached's meta protocol")
    return operation


def _shown(raw):
    text = raw.decode("utf-8", "backslashreplace")
    return repr(text if len(text) <= 60 else text[:57] + "...")


# Parsing the configurations -----------------------------------------------------------


class Router:
    """One router's routes: engine, pools {name: [server]}, and how a key picks a route."""

    def __init__(self, engine, name, datacentre, pools, routes, default):
        self.engine = engine
        self.name = name
        self.datacentre = datacentre
        # {pool name: [{"server": "address:port", "host": label or None}]}
        self.pools = pools
        # mcrouter: {alias: handle}; memcached proxy: {datacentre: handle}
        self.routes = routes
        self.default = default

    def server_names(self):
        return {entry["server"]: entry["host"] for pool in self.pools.values() for entry in pool}


def parse_mcrouter_config(text, name="config.json", datacentre=None):
    """Router from mcrouter JSON. `datacentre` (the --route-prefix's region) is read from the
    config when not given: the one route that fails over to a gutter pool is the local one."""
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ExplainError(f"config={name}: not JSON that mcrouter can read ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("pools"), dict):
        raise ExplainError(f"config={name}: no `pools` object, so not an mcrouter configuration")
    routes_list = config.get("routes")
    if not isinstance(routes_list, list):
        raise ExplainError(f"config={name}: no `routes` list (mcrouter's aliases and routes)")
    pools = {}
    for pool_name, pool in config["pools"].items():
        servers = pool.get("servers") if isinstance(pool, dict) else None
        if not isinstance(servers, list) or not servers:
            raise ExplainError(f"config={name}: pool {pool_name!r} has no `servers` list")
        pools[pool_name] = [{"server": _mcrouter_server(s, name), "host": None} for s in servers]
    routes = {}
    for entry in routes_list:
        if not isinstance(entry, dict) or "route" not in entry or not isinstance(entry.get("aliases"), list):
            raise ExplainError(f"config={name}: route entry {entry!r} needs `aliases` and `route`")
        for alias in entry["aliases"]:
            routes[alias] = entry["route"]
    if datacentre is None:
        local = [
            alias
            for alias, route in routes.items()
            if isinstance(route, dict) and route.get("type") == "FailoverWithExptimeRoute"
        ]
        if len(local) != 1:
            raise ExplainError(
                f"config={name}: cannot tell the router's datacentre (routes with a gutter: {local}); "
                "give it (datacentre=...)"
            )
        datacentre = local[0].strip("/").split("/")[0]
    default_alias = f"/{datacentre}/mw/"
    if default_alias not in routes:
        raise ExplainError(f"datacentre={datacentre}: config={name} has no route {default_alias}")
    return Router("mcrouter", name, datacentre, pools, routes, routes[default_alias])


def _mcrouter_server(server, name):
    match = re.fullmatch(r"(\[[^\]]+\]|[^:]+):(\d+)(:.*)?", str(server))
    if not match:
        raise ExplainError(f"config={name}: server {server!r} is not host:port[:protocol:security]")
    return f"{match.group(1)}:{match.group(2)}"


def parse_proxy_config(text, name="proxy.lua"):
    """Router from the routelib Lua rendered by render_memcached_proxy.py (its subset of Lua)."""
    statements = _LuaParser(text, name).chunk()
    calls = dict(statements)
    for required in ("pools", "routes"):
        if required not in calls:
            raise ExplainError(f"config={name}: no {required}{{...}} block, so not a routelib configuration")
    pools = {}
    for pool_name, pool in calls["pools"].items():
        backends = pool.get("backends") if isinstance(pool, dict) else None
        if not isinstance(backends, dict) or not backends:
            raise ExplainError(f"config={name}: pool {pool_name!r} has no `backends` list")
        pools[pool_name] = [
            {"server": _proxy_server(backends[index], name), "host": backends[index].get("label")}
            for index in sorted(k for k in backends if isinstance(k, int))
        ]
    routes = calls["routes"]
    route_map, default = routes.get("map"), routes.get("default")
    if not isinstance(route_map, dict) or default is None:
        raise ExplainError(f"config={name}: routes{{}} needs `map` and `default`")
    datacentre = _proxy_local_datacentre(route_map, default, name)
    return Router("memcached_proxy", name, datacentre, pools, route_map, default)


def _proxy_server(backend, name):
    if not isinstance(backend, dict) or "host" not in backend or "port" not in backend:
        raise ExplainError(f"config={name}: backend {backend!r} needs host and port")
    host = backend["host"]
    host = f"[{host}]" if ":" in str(host) else host
    return f"{host}:{backend['port']}"


def _proxy_local_datacentre(route_map, default, name):
    # The local datacentre's /mw/ route is the same route as the default one.
    for datacentre, route in route_map.items():
        children = route.get("args", {}).get("children", {}) if isinstance(route, dict) else {}
        if datacentre != "*" and children.get("mw") == default:
            return datacentre
    raise ExplainError(f"config={name}: no datacentre's /mw/ route is the default route")


class _LuaParser:
    """Tables, strings, numbers, calls `f{...}` and `f()`, and `local function f() return X end`."""

    TOKEN = re.compile(
        r'\s+|--[^\n]*|(?P<string>"(?:[^"\\\n]|\\.)*")|(?P<number>-?\d+(?:\.\d+)?)'
        r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[{}()\[\]=,;])"
    )

    def __init__(self, text, name):
        self.name = name
        self.functions = {}
        self.tokens = []
        position, line = 0, 1
        while position < len(text):
            match = self.TOKEN.match(text, position)
            if not match:
                raise ExplainError(
                    f"config={name}: line {line}: cannot parse {text[position : position + 20]!r}"
                )
            kind = match.lastgroup
            if kind:
                self.tokens.append((kind, match.group(kind), line))
            line += match.group(0).count("\n")
            position = match.end()
        self.index = 0

    def _fail(self, expected):
        if self.index < len(self.tokens):
            _kind, value, line = self.tokens[self.index]
            raise ExplainError(f"config={self.name}: line {line}: expected {expected}, found {value!r}")
        raise ExplainError(f"config={self.name}: ends where {expected} was expected")

    def _peek(self, offset=0):
        index = self.index + offset
        return self.tokens[index][:2] if index < len(self.tokens) else (None, None)

    def _take(self, value=None, kind=None):
        token_kind, token_value = self._peek()
        if (value is not None and token_value != value) or (kind is not None and token_kind != kind):
            self._fail(repr(value) if value else kind)
        self.index += 1
        return token_value

    def chunk(self):
        statements = []
        while self.index < len(self.tokens):
            if self._peek() == ("name", "local"):
                self._take("local")
                self._take("function")
                function = self._take(kind="name")
                self._take("(")
                self._take(")")
                self._take("return")
                self.functions[function] = self.expression()
                self._take("end")
            else:
                call = self._take(kind="name")
                if self._peek()[1] != "{":
                    self._fail(f"{{ after {call}")
                statements.append((call, self.table()))
        return statements

    def expression(self):
        kind, value = self._peek()
        if kind == "string":
            self.index += 1
            return re.sub(r"\\(.)", r"\1", value[1:-1])
        if kind == "number":
            self.index += 1
            return float(value) if "." in value else int(value)
        if value == "{":
            return self.table()
        if kind == "name":
            self.index += 1
            if value in ("true", "false"):
                return value == "true"
            if self._peek()[1] == "{":
                return {"call": value, "args": self.table()}
            if self._peek()[1] == "(":
                self._take("(")
                self._take(")")
                if value not in self.functions:
                    raise ExplainError(f"config={self.name}: {value}() is called but never defined")
                return self.functions[value]
            self._fail(f"{{ or ( after {value}")
        self._fail("a value")
        return None

    def table(self):
        self._take("{")
        result, position = {}, 1
        while self._peek()[1] != "}":
            if self._peek()[1] == "[":
                self._take("[")
                key = self.expression()
                self._take("]")
                self._take("=")
                result[key] = self.expression()
            elif self._peek()[0] == "name" and self._peek(1)[1] == "=":
                key = self._take(kind="name")
                self._take("=")
                result[key] = self.expression()
            else:
                result[position] = self.expression()
                position += 1
            if self._peek()[1] in (",", ";"):
                self.index += 1
        self._take("}")
        return result


def router_from_model(model, router_host):
    """The router `router_host` of the topology model, its configuration rendered here."""
    from ansible_collections.mcfleet.fleet.plugins.module_utils import render_mcrouter, render_memcached_proxy

    router = (model.get("routers") or {}).get(router_host)
    if router is None:
        known = ", ".join(sorted(model.get("routers") or {}))
        raise ExplainError(f"router={router_host!r}: not a router or proxy of the model ({known})")
    engine = router["engine"]
    if engine == "mcrouter":
        parsed = parse_mcrouter_config(
            render_mcrouter.render_config_text(model, router_host), router_host, router["datacentre"]
        )
    else:
        parsed = parse_proxy_config(
            render_memcached_proxy.render_config_text(model, router_host), router_host
        )
    names = {}
    for host, entry in model["hosts"].items():
        names[endpoint_text(entry["address"], entry["port"])] = host
        if host in model["routers"] and model["routers"][host]["cross_dc_port"] is not None:
            names[endpoint_text(entry["address"], model["routers"][host]["cross_dc_port"])] = host
    for pool in parsed.pools.values():
        for entry in pool:
            entry["host"] = entry["host"] or names.get(entry["server"])
    return parsed


def load_router(
    config_text=None, config_name="config", engine=None, datacentre=None, model=None, router=None
):
    """A Router from a configuration's text (engine given or guessed from the text) or a model."""
    if model is not None:
        return router_from_model(model, router)
    if config_text is None:
        raise ExplainError("config: give a rendered router configuration, or a topology model and a router")
    if engine is None:
        engine = "mcrouter" if config_text.lstrip().startswith("{") else "memcached_proxy"
    if engine not in ENGINES:
        raise ExplainError(f"engine={engine!r}: not one of {', '.join(ENGINES)}")
    if engine == "mcrouter":
        return parse_mcrouter_config(config_text, config_name, datacentre)
    parsed = parse_proxy_config(config_text, config_name)
    if datacentre is not None and datacentre != parsed.datacentre:
        raise ExplainError(f"datacentre={datacentre}: config={config_name} routes for {parsed.datacentre}")
    return parsed


# Explaining one request ---------------------------------------------------------------


def split_key(key):
    """(routing prefix, key without it, hashed key) as mcrouter reads the key (bytes)."""
    text = key.decode("utf-8", "surrogateescape")
    prefix = ""
    # Keys-inl.h: a leading / and two more make the routing prefix.
    if text.startswith("/"):
        first = text.find("/", 1)
        second = text.find("/", first + 1) if first != -1 else -1
        if second != -1:
            prefix = text[: second + 1]
    rest = text[len(prefix) :]
    if prefix and not rest:
        raise ExplainError(f"key={text!r}: nothing after the routing prefix {prefix}")
    return prefix, _encoded(rest), _encoded(rest.split(HASH_STOP, 1)[0])


def _encoded(text):
    return text.encode("utf-8", "surrogateescape")


class _Walk:
    """One request's way through a router: the lines that explain it and where it lands."""

    def __init__(self, router, operation, hashed_key, blocked):
        self.router = router
        self.operation = operation
        self.hashed_key = hashed_key
        self.blocked = blocked
        self.lines = []
        self.index_cache = {}

    def line(self, depth, text):
        self.lines.append("  " * depth + text)

    def pool(self, name, depth, mode):
        servers = self.router.pools.get(name)
        if servers is None:
            raise ExplainError(f"config={self.router.name}: route names pool {name!r}, which is not defined")
        size = len(servers)
        if size not in self.index_cache:
            self.index_cache[size] = route_hashing.POOL_INDEX[self.router.engine](self.hashed_key, size)
        index = self.index_cache[size]
        entry = servers[index]
        label = f"{entry['server']} ({entry['host']})" if entry["host"] else entry["server"]
        hashing = "Ch3 (furc_hash)" if self.router.engine == "mcrouter" else "XXH3 + jump hash"
        failed = _is_blocked(entry, self.blocked)
        state = "BLOCKED: error, the route fails over" if failed else "serves"
        self.line(depth, f"pool {name}: {hashing} -> server {index} of {size}: {label} [{state}]")
        destination = {
            "pool": name,
            "index": index,
            "pool_size": size,
            "server": entry["server"],
            "host": entry["host"],
            "mode": mode,
        }
        return (not failed), [] if failed else [destination]

    def mcrouter(self, handle, depth, mode="sync"):
        """(ok, destinations) of an mcrouter route handle."""
        if isinstance(handle, str):
            kind, _separator, pool = handle.partition("|")
            if kind != "PoolRoute" or not pool:
                raise ExplainError(
                    f"config={self.router.name}: route handle {handle!r} is not PoolRoute|<pool>"
                )
            return self.pool(pool, depth, mode)
        kind = handle.get("type") if isinstance(handle, dict) else None
        if kind == "PoolRoute":
            return self.mcrouter(f"PoolRoute|{handle.get('pool')}", depth, mode)
        if kind in ("FailoverRoute", "FailoverWithExptimeRoute"):
            if kind == "FailoverRoute":
                children = handle["children"]
                note = ""
            else:
                children = [handle["normal"], handle["failover"]]
                exptime = handle.get("failover_exptime", 60)
                note = (
                    f", failover on {', '.join(handle.get('failover_errors') or ['any error'])}; "
                    f"failover writes expire after at most {exptime} s"
                )
            self.line(depth, f"{kind}: children in order{note}")
            return self._failover(children, depth, mode, self.mcrouter)
        if kind == "OperationSelectorRoute":
            policies = handle.get("operation_policies") or {}
            if self.operation in policies:
                self.line(depth, f"OperationSelectorRoute: {self.operation} -> its own policy")
                return self.mcrouter(policies[self.operation], depth + 1, mode)
            self.line(depth, f"OperationSelectorRoute: {self.operation} -> default_policy")
            return self.mcrouter(handle["default_policy"], depth + 1, mode)
        if kind in ("AllSyncRoute", "AllAsyncRoute"):
            child_mode = "sync" if kind == "AllSyncRoute" else "async"
            return self._all(kind, handle["children"], depth, mode, child_mode, self.mcrouter)
        raise ExplainError(
            f"config={self.router.name}: route handle type {kind!r} is not one the explainer knows"
        )

    def proxy(self, handle, depth, mode="sync"):
        """(ok, destinations) of a routelib route object (a pool name or a route_* call)."""
        if isinstance(handle, str):
            return self.pool(handle, depth, mode)
        call = handle.get("call") if isinstance(handle, dict) else None
        args = handle.get("args", {}) if isinstance(handle, dict) else {}
        if call == "route_failover":
            self.line(depth, "route_failover: children in order, the next one on an error")
            return self._failover(_array(args.get("children")), depth, mode, self.proxy)
        if call == "route_mcfleet_failover":
            self.line(
                depth,
                "route_mcfleet_failover: the primary, the gutter on an error; a key the gutter took a "
                f"write for stays on the gutter for {args.get('fence_s')} s (its fence)",
            )
            return self._failover([args["child_primary"], args["child_gutter"]], depth, mode, self.proxy)
        if call == "route_direct":
            self.line(depth, "route_direct")
            return self.proxy(args["child"], depth + 1, mode)
        if call == "route_ttl":
            applies = self.operation in PROXY_SET_LIKE
            what = f"sets the TTL to {args.get('ttl')} s" if applies else "passes (not a set-like command)"
            self.line(depth, f"route_ttl: {what}")
            return self.proxy(args["child"], depth + 1, mode)
        if call in ("route_allsync", "route_allasync"):
            child_mode = "sync" if call == "route_allsync" else "async"
            return self._all(call, _array(args.get("children")), depth, mode, child_mode, self.proxy)
        if call == "route_split":
            self.line(depth, "route_split: child_b without waiting, the reply from child_a")
            ok, destinations = self.proxy(args["child_a"], depth + 1, mode)
            _ok, more = self.proxy(args["child_b"], depth + 1, "async")
            return ok, destinations + more
        if call == "route_mcfleet_journal":
            journalled = self.operation not in PROXY_READS
            what = f"records the key in {args.get('path')}" if journalled else "passes (a read)"
            self.line(depth, f"route_mcfleet_journal: {what}")
            return self.proxy(args["child"], depth + 1, mode)
        if call == "route_mcfleet_operation":
            chosen = _operation_child(self.operation, args)
            self.line(depth, f"route_mcfleet_operation: {self.operation} -> {chosen}")
            return self.proxy(args[chosen], depth + 1, mode)
        raise ExplainError(f"config={self.router.name}: route {call!r} is not one the explainer knows")

    def _failover(self, children, depth, mode, walk):
        for child in children:
            ok, destinations = walk(child, depth + 1, mode)
            if ok:
                return True, destinations
        self.line(depth + 1, "every child failed: the client gets the last error")
        return False, []

    def _all(self, name, children, depth, mode, child_mode, walk):
        waits = (
            "waits for every child" if child_mode == "sync" else "replies at once, children fire and forget"
        )
        self.line(depth, f"{name}: {waits}")
        ok_all, reached = True, []
        for child in children:
            ok, destinations = walk(child, depth + 1, "async" if "async" in (mode, child_mode) else "sync")
            ok_all = ok_all and ok
            reached += destinations
        return (True if child_mode == "async" else ok_all), reached


def _operation_child(operation, args):
    """The child route_mcfleet_operation (routes.lua) hands `operation` to."""
    if operation in PROXY_SET_LIKE and "child_set" in args:
        return "child_set"
    if operation in PROXY_DELETE_LIKE and "child_delete" in args:
        return "child_delete"
    return "child_default"


def _array(table):
    if isinstance(table, list):
        return table
    if isinstance(table, dict):
        return [table[k] for k in sorted(k for k in table if isinstance(k, int))]
    return []


def _is_blocked(entry, blocked):
    return entry["server"] in blocked or (entry["host"] is not None and entry["host"] in blocked)


def _select_mcrouter(router, prefix, walk):
    if not prefix:
        walk.line(0, f"no routing prefix: the default route (--route-prefix=/{router.datacentre}/mw/)")
        return [router.default]
    if "*" in prefix:
        pattern = re.compile("^" + ".*".join(re.escape(part) for part in prefix.split("*")) + "$")
        matched = [alias for alias in router.routes if pattern.match(alias)]
        if matched:
            walk.line(0, f"routing prefix {prefix}: every matching route ({', '.join(matched)})")
            return [router.routes[alias] for alias in matched]
    elif prefix in router.routes:
        walk.line(0, f"routing prefix {prefix}: route {prefix}")
        return [router.routes[prefix]]
    walk.line(
        0, f"routing prefix {prefix}: no such route, the default route (--send-invalid-route-to-default)"
    )
    return [router.default]


def _select_proxy(router, text, walk):
    """(handle, the prefix route_mcfleet_prefix strips or '') for a key (text) at the proxy."""
    # routes{ mode = "anchor", start = "/", stop = "/" }: the text between the leading / and
    # the next one picks a map entry; no such text, or no entry, takes the default.
    first = text.find("/", 1) if text.startswith("/") else -1
    datacentre = text[1:first] if first > 1 else None
    if datacentre is None or datacentre not in router.routes:
        why = "no /<datacentre>/ routing prefix" if datacentre is None else f"no route for /{datacentre}/"
        walk.line(0, f"{why}: routes{{}} default (the key is hashed whole)")
        return router.default, ""
    handle = router.routes[datacentre]
    clusters = handle.get("args", {}).get("children", {})
    cluster_end = text.find("/", first + 1)
    if cluster_end == -1 or cluster_end == len(text) - 1:
        raise ExplainError(
            f"key={text!r}: router {router.name} reads /{datacentre}/ keys as /{datacentre}/<cluster>/<key> "
            "(route_mcfleet_prefix answers SERVER_ERROR no route)"
        )
    cluster = text[first + 1 : cluster_end]
    if cluster not in clusters:
        raise ExplainError(
            f"key={text!r}: cluster {cluster!r}; router {router.name} routes only "
            f"{', '.join(sorted(clusters))} under /{datacentre}/ (it answers SERVER_ERROR no route)"
        )
    prefix = text[: cluster_end + 1]
    walk.line(
        0, f"routes{{}} map [{datacentre!r}] -> route_mcfleet_prefix: strips {prefix}, cluster {cluster}"
    )
    return clusters[cluster], prefix


def check_blocked(router, blocked, model=None):
    """Refuses blocked names that are no server of the router's pools (nor, with a model, a
    host of the model, which a next hop may reach): a typo would otherwise block nothing and
    make every key look unaffected."""
    known = set(router.server_names()) | {host for host in router.server_names().values() if host}
    if model is not None:
        for host, entry in (model.get("hosts") or {}).items():
            known |= {host, endpoint_text(entry["address"], entry["port"])}
    unknown = sorted(name for name in set(blocked or ()) if name not in known)
    if unknown:
        where = "a host of the model" if model is not None else f"a server of router {router.name}'s pools"
        raise ExplainError(f"blocked={unknown}: not {where}")


def explain(router, operation, key, blocked=(), model=None, _hop=0):
    """How `router` routes `operation` on `key`, with `blocked` servers failing.

    Returns {engine, router, datacentre, operation, key, routing_prefix, routing_key,
    hashed_key, route (lines), destinations [{pool, index, pool_size, server, host, mode}],
    ok, next_hop (the explanation at another datacentre's proxy, when a model is given)}.
    """
    raw = check_key(key)
    check_operation(operation, router.engine)
    blocked = frozenset(blocked or ())
    if _hop == 0:
        check_blocked(router, blocked, model)
    walk = _Walk(router, operation, b"", blocked)
    if router.engine == "mcrouter":
        prefix, rest, walk.hashed_key = split_key(raw)
        handles = _select_mcrouter(router, prefix, walk)
        ok, destinations = True, []
        for handle in handles:
            handle_ok, reached = walk.mcrouter(handle, 1)
            ok = ok and handle_ok
            destinations += reached
        forwarded = rest
    else:
        handle, prefix = _select_proxy(router, raw.decode("utf-8", "surrogateescape"), walk)
        # Without a stripped prefix memcached hashes (and stores) the whole key.
        rest = walk.hashed_key = raw[len(prefix.encode("utf-8", "surrogateescape")) :]
        ok, destinations = walk.proxy(handle, 1)
        forwarded = rest
    result = {
        "engine": router.engine,
        "router": router.name,
        "datacentre": router.datacentre,
        "operation": operation,
        "key": raw.decode("utf-8", "backslashreplace"),
        "routing_prefix": prefix,
        "routing_key": rest.decode("utf-8", "backslashreplace"),
        "hashed_key": walk.hashed_key.decode("utf-8", "backslashreplace"),
        "route": walk.lines,
        "destinations": destinations,
        "ok": ok,
        "next_hops": [],
    }
    if model is not None and _hop < MAX_HOPS:
        for destination in destinations:
            host = destination["host"]
            if host in (model.get("routers") or {}) and host != router.name:
                # The proxy gets the key without its routing prefix: its own default route.
                hop = explain(
                    router_from_model(model, host),
                    operation,
                    forwarded.decode("utf-8", "surrogateescape"),
                    blocked,
                    model,
                    _hop + 1,
                )
                result["next_hops"].append(hop)
    return result


def final_destinations(result):
    """The memcached servers a request ends on, following proxies when the model was given."""
    finals = []
    hop_hosts = {hop["router"] for hop in result["next_hops"]}
    for destination in result["destinations"]:
        if destination["host"] not in hop_hosts:
            finals.append(destination)
    for hop in result["next_hops"]:
        finals += final_destinations(hop)
    return finals


def describe(result, depth=0):
    """Plain-text explanation for a terminal."""
    pad = "  " * depth
    lines = [
        f"{pad}{result['engine']} router {result['router']} (datacentre {result['datacentre']}): "
        f"{result['operation']} {result['key']}",
        f"{pad}routing prefix {result['routing_prefix'] or '(none)'}; hashed key {result['hashed_key']!r}",
    ]
    lines += [pad + line for line in result["route"]]
    if result["destinations"]:
        for destination in result["destinations"]:
            name = f" ({destination['host']})" if destination["host"] else ""
            lines.append(
                f"{pad}=> {destination['server']}{name} pool {destination['pool']} [{destination['mode']}]"
            )
    else:
        lines.append(f"{pad}=> no server: the request fails")
    for hop in result["next_hops"]:
        lines.append(f"{pad}at the proxy, without its routing prefix:")
        lines += describe(hop, depth + 1)
    return lines


# Many keys at once: what moves when servers are blocked ------------------------------

SAMPLE_KEY_FORMAT = "mcfleet:sample:{}"


def sample_keys(count):
    """`count` synthetic keys (without routing prefix), the same on every run."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ExplainError(f"keys={count!r}: give a whole number of keys, 1 or more")
    return [SAMPLE_KEY_FORMAT.format(number).encode() for number in range(count)]


class _VectorWalk:
    """Places many keys through one route at once; keys end on a server or fail."""

    def __init__(self, router, operation, hashed_keys, blocked, indexes=None):
        import numpy

        self.np = numpy
        self.router = router
        self.operation = operation
        self.keys = hashed_keys
        self.blocked = blocked
        # {pool size: every key's index}; shared between placements of the same keys.
        self.indexes = {} if indexes is None else indexes
        self.labels = []
        self.codes = {}
        self.placed = numpy.full(len(hashed_keys), -1, dtype=numpy.int64)

    def code(self, entry):
        label = entry["host"] or entry["server"]
        if label not in self.codes:
            self.codes[label] = len(self.labels)
            self.labels.append(label)
        return self.codes[label]

    def pool(self, name, rows):
        servers = self.router.pools.get(name)
        if servers is None:
            raise ExplainError(f"config={self.router.name}: route names pool {name!r}, which is not defined")
        size = len(servers)
        if size not in self.indexes:
            self.indexes[size] = route_hashing.POOL_INDEX_MANY[self.router.engine](self.keys, size)
        index = self.indexes[size][rows]
        codes = self.np.array([self.code(entry) for entry in servers], dtype=self.np.int64)
        failing = self.np.array([_is_blocked(entry, self.blocked) for entry in servers], dtype=bool)
        failed = failing[index]
        self.placed[rows[~failed]] = codes[index[~failed]]
        return rows[failed]

    def walk(self, handle, rows):
        """The rows (keys) whose request fails on this handle."""
        if not len(rows):
            return rows
        if self.router.engine == "mcrouter":
            if isinstance(handle, str):
                return self.pool(handle.partition("|")[2], rows)
            kind = handle.get("type")
            if kind == "PoolRoute":
                return self.pool(handle["pool"], rows)
            if kind == "FailoverRoute":
                return self._failover(handle["children"], rows)
            if kind == "FailoverWithExptimeRoute":
                return self._failover([handle["normal"], handle["failover"]], rows)
            if kind == "OperationSelectorRoute":
                policies = handle.get("operation_policies") or {}
                return self.walk(policies.get(self.operation, handle["default_policy"]), rows)
            raise ExplainError(
                f"operation={self.operation}: {kind} replicates the request; what moves is counted for "
                "routes that send a key to one server (use get)"
            )
        if isinstance(handle, str):
            return self.pool(handle, rows)
        call, args = handle.get("call"), handle.get("args", {})
        if call == "route_failover":
            return self._failover(_array(args.get("children")), rows)
        if call == "route_mcfleet_failover":
            return self._failover([args["child_primary"], args["child_gutter"]], rows)
        if call in ("route_direct", "route_ttl", "route_mcfleet_journal"):
            return self.walk(args["child"], rows)
        if call == "route_mcfleet_operation":
            return self.walk(args[_operation_child(self.operation, args)], rows)
        raise ExplainError(
            f"operation={self.operation}: {call} replicates the request; what moves is counted for "
            "routes that send a key to one server (use get)"
        )

    def _failover(self, children, rows):
        for child in children:
            rows = self.walk(child, rows)
        return rows


def _route_for_prefix(router, prefix):
    """The one route handle keys with `prefix` take, and whether the prefix is hashed with the key."""
    walk = _Walk(router, "get", b"", frozenset())
    if router.engine == "mcrouter":
        handles = _select_mcrouter(router, prefix, walk)
        if len(handles) != 1:
            raise ExplainError(f"prefix={prefix}: matches {len(handles)} routes; what moves needs one")
        return handles[0], False
    handle, stripped = _select_proxy(router, prefix + "k", walk)
    return handle, not stripped


def place_many(router, keys, blocked=(), operation="get", prefix=None, indexes=None):
    """(labels, codes): for each key (bytes, without prefix) the index into labels of the server
    it lands on, -1 where the request fails. `indexes` ({}) keeps the hashing for another call
    with the same keys, router, operation and prefix."""
    check_operation(operation, router.engine)
    prefix = f"/{router.datacentre}/mw/" if prefix is None else prefix
    if prefix:
        check_key(prefix.encode() + b"k")
    handle, whole = _route_for_prefix(router, prefix)
    hashed = keys
    if whole:
        hashed = [prefix.encode() + key for key in keys]
    elif router.engine == "mcrouter":
        stop = HASH_STOP.encode()
        hashed = [key.split(stop, 1)[0] if stop in key else key for key in keys]
    walker = _VectorWalk(router, operation, hashed, frozenset(blocked or ()), indexes)
    failed = walker.walk(handle, walker.np.arange(len(keys)))
    walker.placed[failed] = -1
    return walker.labels, walker.placed


def what_moves(router, blocked, keys=10000, operation="get", prefix=None):
    """Where keys go while `blocked` servers fail, against where they go when none fails.

    `keys` is a count of synthetic keys or a list of keys (without routing prefix).
    Returns {keys, route_prefix, blocked, moved, moved_fraction, failed, destinations
    {server: {count, fraction}}, moved_to {server: {count, fraction}}}; fractions are of all keys.
    """
    np = __import__("numpy")
    key_list = sample_keys(keys) if isinstance(keys, int) else [check_key(key) for key in keys]
    total = len(key_list)
    if not total:
        raise ExplainError("keys=[]: give at least one key")
    blocked = sorted(set(blocked or ()))
    check_blocked(router, blocked)
    indexes = {}
    before_labels, before = place_many(router, key_list, (), operation, prefix, indexes)
    after_labels, after = place_many(router, key_list, blocked, operation, prefix, indexes)
    # One label space for both placements.
    labels = list(dict.fromkeys(before_labels + after_labels))
    to_common = {name: labels.index(name) for name in labels}
    before_common = np.array([to_common[name] for name in before_labels] + [-1])[before]
    after_common = np.array([to_common[name] for name in after_labels] + [-1])[after]
    moved = before_common != after_common

    def table(codes):
        counts = np.bincount(codes[codes >= 0], minlength=len(labels))
        return {
            labels[index]: {"count": int(count), "fraction": round(int(count) / total, 6)}
            for index, count in enumerate(counts)
            if count
        }

    return {
        "keys": total,
        "route_prefix": f"/{router.datacentre}/mw/" if prefix is None else prefix,
        "blocked": blocked,
        "moved": int(moved.sum()),
        "moved_fraction": round(int(moved.sum()) / total, 6),
        "failed": int((after_common < 0).sum()),
        "destinations": table(after_common),
        "moved_to": table(after_common[moved]),
    }


def gutter_shares(router, shards, keys=20000):
    """{shard: {server: fraction of the shard's keys it takes while the shard is blocked}}.

    With consistent hashing on both pools a shard's keys need not spread evenly over the
    gutter servers: with mcrouter's Ch3, a 3-shard pool and a 2-server gutter send every
    key of shard 0 to gutter server 0. A key's failover server does not depend on which
    shard is out, so two placements (none blocked, every shard blocked) give every share.
    """
    np = __import__("numpy")
    key_list = sample_keys(keys)
    indexes = {}
    home_labels, home = place_many(router, key_list, indexes=indexes)
    away_labels, away = place_many(router, key_list, shards, indexes=indexes)
    shares = {}
    for shard in shards:
        if shard not in home_labels:
            shares[shard] = {}
            continue
        mine = away[home == home_labels.index(shard)]
        counts = np.bincount(mine[mine >= 0], minlength=len(away_labels))
        shares[shard] = {
            away_labels[index]: round(int(count) / len(mine), 6)
            for index, count in enumerate(counts)
            if count
        }
    return shares


def datacentre_gutter_shares(model, datacentre, keys=20000):
    """gutter_shares of `datacentre`'s main shards, placed by its first router's routes; None
    when it has no router or gutter, or the explainer's packages are missing (callers then
    treat the gutter pool as a whole)."""
    dc = model["datacentres"][datacentre]
    if not dc["routers"] or not dc["gutter"] or not dc["main"]:
        return None
    try:
        router = router_from_model(model, dc["routers"][0]["host"])
        return gutter_shares(router, [entry["host"] for entry in dc["main"]], keys)
    except (ExplainError, route_hashing.HashingError, ImportError):
        return None
