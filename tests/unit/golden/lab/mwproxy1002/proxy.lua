-- mcfleet: memcached proxy (routelib) configuration for mwproxy1002, datacentre eqiad.
-- Rendered from the topology model (plugins/module_utils/render_memcached_proxy.py); do not edit.

-- Backend health from the TKO settings (see backend_settings()).
settings{
    backend_connect_timeout = 1,
    backend_read_timeout = 1,
    backend_failure_limit = 3,
    backend_retry_waittime = 3,
    backend_flap_time = 3,
    backend_flap_backoff_ramp = 1.5,
    backend_flap_backoff_max = 10,
}

pools{
    ["eqiad_main"] = {
        backends = {
            { host = "10.89.213.11", port = 11211, label = "mc1001" },
            { host = "10.89.213.12", port = 11211, label = "mc1002" },
            { host = "10.89.213.13", port = 11211, label = "mc1003" },
        },
    },
    ["eqiad_gutter"] = {
        backends = {
            { host = "10.89.213.14", port = 11211, label = "mc-gp1001" },
        },
    },
    -- Remote proxies through this host's TLS tunnels (stunnel on 127.0.0.1).
    ["codfw_proxies"] = {
        backend_options = { connecttimeout = 0.25, readtimeout = 0.25 },
        backends = {
            { host = "127.0.0.1", port = 21214, label = "mwproxy2001" },
        },
    },
    ["codfw_proxies_secondary"] = {
        backend_options = { connecttimeout = 0.25, readtimeout = 0.25 },
        backends = {
            { host = "127.0.0.1", port = 21215, label = "mwproxy2002" },
        },
    },
}

-- /eqiad/mw/: main pool, failing over to the gutter pool; set-like
-- writes to the gutter expire after the gutter TTL (10 s). Every write or
-- delete the gutter takes is journalled, for the failed shard's stale-safe return, and fences
-- its key on the gutter for 30 s (no read meets the shard's older copy after it returns).
local function local_failover()
    return route_mcfleet_operation{
        child_default = route_mcfleet_failover{
            child_primary = "eqiad_main",
            child_gutter = route_mcfleet_journal{ path = "/var/lib/mcfleet-router/failover.journal", child = "eqiad_gutter" },
            fence_s = 30,
        },
        child_set = route_mcfleet_failover{
            child_primary = "eqiad_main",
            child_gutter = route_mcfleet_journal{ path = "/var/lib/mcfleet-router/failover.journal", child = route_ttl{ ttl = 10, child = "eqiad_gutter" } },
            fence_s = 30,
        },
    }
end

-- /codfw/mw/: codfw's primary proxies, failing over to its secondary proxies.
local function route_to_codfw()
    return route_failover{ children = { "codfw_proxies", "codfw_proxies_secondary" } }
end

routes{
    -- The router matches /<datacentre>/; route_mcfleet_prefix strips /<datacentre>/<cluster>/.
    conf = { mode = "anchor", start = "/", stop = "/" },
    map = {
        ["eqiad"] = route_mcfleet_prefix{ children = {
            mw = local_failover(),
            ["mw-wan"] = route_mcfleet_operation{
                child_default = local_failover(),
                child_set = route_allsync{ children = { local_failover() } },
                child_delete = route_allsync{ children = { local_failover() } },
            },
        } },
        ["codfw"] = route_mcfleet_prefix{ children = {
            mw = route_to_codfw(),
            ["mw-wan"] = route_mcfleet_operation{
                child_default = route_to_codfw(),
                child_set = route_allasync{ children = { route_to_codfw() } },
                child_delete = route_allasync{ children = { route_to_codfw() } },
            },
        } },
        ["*"] = route_mcfleet_prefix{ children = {
            ["mw-wan"] = route_mcfleet_operation{
                child_default = local_failover(),
                child_set = route_split{
                    child_a = route_allsync{ children = { local_failover() } },
                    child_b = route_allasync{ children = { route_to_codfw() } },
                },
                child_delete = route_split{
                    child_a = route_allsync{ children = { local_failover() } },
                    child_b = route_allasync{ children = { route_to_codfw() } },
                },
            },
        } },
    },
    -- Keys without a routing prefix belong to this datacentre (mcrouter's --route-prefix).
    default = local_failover(),
}
