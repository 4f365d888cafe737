-- mcfleet extensions to memcached's routelib. Load after it:
--   memcached -o proxy_config=routelib:/path/to/this.lua,proxy_arg=/path/to/config.lua
--
-- route_mcfleet_prefix{ children = { <cluster> = route, ... } }
--   For keys /<datacentre>/<cluster>/<key>: strips the routing prefix, as mcrouter
--   does, and hands <key> to the child named <cluster>.
-- route_mcfleet_operation{ child_default = route, child_set = route, child_delete = route }
--   mcrouter's OperationSelectorRoute: set-like commands (set, add, cas, ms) to child_set,
--   delete and md to child_delete, everything else to child_default.
-- route_mcfleet_shadow{ child = route, key_fraction = { from, to } }
--   The filter of a shadow copy (under route_split's child_b): keys whose 32-bit FNV-1a
--   hash (http://www.isthe.com/chongo/tech/comp/fnv/) falls in [from, to) of the hash
--   space go to child; other keys are answered at once, and route_split discards that
--   reply. mcrouter's key_fraction_range does the same with its own hash.
-- route_mcfleet_journal{ child = route, path = "/var/lib/mcfleet-router/failover.journal" }
--   The failover journal: placed on the gutter side of a failover, so every request it sees
--   is one whose home shard failed. Each one that may change a key (anything but get, gets
--   and mg) is appended to path as "<unix time> <command> <key>" before it goes to child.
--   A shard that comes back holding data replays these keys as deletes before it rejoins
--   (mcfleet.fleet.failover_journal, shard_invalidate): the gutter's copies expire, the
--   journal does not. mcrouter keeps deletes it could not deliver in the same spirit
--   (its asynclog: facebook/mcrouter mcrouter/routes/AsynclogRoute.h).
-- route_mcfleet_failover{ child_primary = pool, child_gutter = route, fence_s = 60 }
--   routelib's route_failover over { primary, gutter } (the gutter on any error of the
--   primary), plus fences that close the race at re-admission. A write the gutter takes fences
--   its key for fence_s seconds in this router's own cache (mcp.internal_handler: one cache for
--   every worker thread). While a key is fenced, reads of it go to the gutter, and writes to it
--   delete it on the primary first, then go to the gutter: so a read never meets a copy the
--   primary held from before the failover, whenever the router re-admits the primary and
--   however far the journal's replay lags behind. A fence lasts fence_s from the last write the
--   primary could not take: a write that deleted the primary's copy does not extend it, so a
--   key returns to its primary soon after the primary does. While the gutter fails, a fenced
--   key is served by its primary.

-- routelib ships allasync (fire-and-forget, null reply at once) without registering it.
register_route_handlers({
    "mcfleet_prefix", "mcfleet_operation", "mcfleet_shadow", "mcfleet_journal", "mcfleet_failover", "allasync",
})

local NO_ROUTE <const> = "SERVER_ERROR mcfleet: no route for this key prefix\r\n"

function route_mcfleet_prefix_conf(t, ctx)
    return t
end

function route_mcfleet_prefix_start(a, ctx, fgen)
    local handles = {}
    for cluster, child in pairs(a.children) do
        handles[cluster] = fgen:new_handle(child)
    end
    fgen:ready({ a = handles, n = ctx:label(), f = route_mcfleet_prefix_f })
end

function route_mcfleet_prefix_f(rctx, handles)
    return function(r)
        local key = r:key()
        -- The router matched /<datacentre>/ already; find the end of /<cluster>/.
        local datacentre_end = string.find(key, "/", 2, true)
        if datacentre_end == nil then
            return NO_ROUTE
        end
        local cluster_end = string.find(key, "/", datacentre_end + 1, true)
        if cluster_end == nil or cluster_end == #key then
            return NO_ROUTE
        end
        local handle = handles[string.sub(key, datacentre_end + 1, cluster_end - 1)]
        if handle == nil then
            return NO_ROUTE
        end
        r:ltrimkey(cluster_end)
        return rctx:enqueue_and_wait(r, handle)
    end
end

function route_mcfleet_operation_conf(t, ctx)
    return t
end

function route_mcfleet_operation_start(a, ctx, fgen)
    local o = { default = fgen:new_handle(a.child_default) }
    if a.child_set then
        o.set = fgen:new_handle(a.child_set)
    end
    if a.child_delete then
        o.delete = fgen:new_handle(a.child_delete)
    end
    fgen:ready({ a = o, n = ctx:label(), f = route_mcfleet_operation_f })
end

function route_mcfleet_operation_f(rctx, o)
    local default, set, delete = o.default, o.set or o.default, o.delete or o.default
    local SET_LIKE <const> = {
        [mcp.CMD_SET] = true, [mcp.CMD_ADD] = true, [mcp.CMD_CAS] = true, [mcp.CMD_MS] = true,
    }
    local DELETE_LIKE <const> = { [mcp.CMD_DELETE] = true, [mcp.CMD_MD] = true }
    return function(r)
        local command = r:command()
        if SET_LIKE[command] then
            return rctx:enqueue_and_wait(r, set)
        elseif DELETE_LIKE[command] then
            return rctx:enqueue_and_wait(r, delete)
        end
        return rctx:enqueue_and_wait(r, default)
    end
end

local NOT_SHADOWED <const> = "SERVER_ERROR mcfleet: key not in the shadow's fraction\r\n"
local HASH_SPACE <const> = 4294967296

function route_mcfleet_shadow_conf(t, ctx)
    local fraction = t.key_fraction
    if type(fraction) ~= "table" or not (0 <= fraction[1] and fraction[1] < fraction[2] and fraction[2] <= 1) then
        error("route_mcfleet_shadow: key_fraction must be { from, to } with 0 <= from < to <= 1")
    end
    return t
end

function route_mcfleet_shadow_start(a, ctx, fgen)
    local o = {
        child = fgen:new_handle(a.child),
        from = math.floor(a.key_fraction[1] * HASH_SPACE),
        to = math.floor(a.key_fraction[2] * HASH_SPACE),
    }
    fgen:ready({ a = o, n = ctx:label(), f = route_mcfleet_shadow_f })
end

function route_mcfleet_shadow_f(rctx, o)
    local child, from, to = o.child, o.from, o.to
    local byte = string.byte
    return function(r)
        local key = r:key()
        local hash = 2166136261
        for i = 1, #key do
            hash = ((hash ~ byte(key, i)) * 16777619) & 0xffffffff
        end
        if hash >= from and hash < to then
            return rctx:enqueue_and_wait(r, child)
        end
        return NOT_SHADOWED
    end
end

function route_mcfleet_journal_conf(t, ctx)
    if type(t.path) ~= "string" or string.sub(t.path, 1, 1) ~= "/" then
        error("route_mcfleet_journal: path must be an absolute file name")
    end
    return t
end

function route_mcfleet_journal_start(a, ctx, fgen)
    fgen:ready({ a = { child = fgen:new_handle(a.child), path = a.path }, n = ctx:label(), f = route_mcfleet_journal_f })
end

function route_mcfleet_journal_f(rctx, o)
    local child, path = o.child, o.path
    local READS <const> = { [mcp.CMD_GET] = true, [mcp.CMD_GETS] = true, [mcp.CMD_MG] = true }
    local NAMES <const> = {
        [mcp.CMD_SET] = "set", [mcp.CMD_ADD] = "add", [mcp.CMD_REPLACE] = "replace", [mcp.CMD_CAS] = "cas",
        [mcp.CMD_APPEND] = "append", [mcp.CMD_PREPEND] = "prepend", [mcp.CMD_DELETE] = "delete",
        [mcp.CMD_INCR] = "incr", [mcp.CMD_DECR] = "decr", [mcp.CMD_TOUCH] = "touch",
        [mcp.CMD_MS] = "ms", [mcp.CMD_MD] = "md", [mcp.CMD_MA] = "ma",
    }
    -- One handle per worker thread, opened for appending: each line is one write(2) of well
    -- under PIPE_BUF bytes, so the threads' lines never interleave.
    local journal = nil
    local function record(command, key)
        if journal == nil then
            journal = io.open(path, "a")
            if journal == nil then
                return false
            end
            journal:setvbuf("line")
        end
        return journal:write(os.time(), " ", NAMES[command] or tostring(command), " ", key, "\n") ~= nil
    end
    return function(r)
        local command = r:command()
        if not READS[command] and not record(command, r:key()) then
            -- Not journalled means the shard could return stale: refuse the write instead.
            journal = nil
            return "SERVER_ERROR mcfleet: failover journal " .. path .. " not writable\r\n"
        end
        return rctx:enqueue_and_wait(r, child)
    end
end

function route_mcfleet_failover_conf(t, ctx)
    if math.type(t.fence_s) ~= "integer" or t.fence_s < 1 then
        error("route_mcfleet_failover: fence_s must be a whole number of seconds, at least 1")
    end
    return t
end

function route_mcfleet_failover_start(a, ctx, fgen)
    -- One handle per use: a request may wait on each handle of its context once.
    local o = {
        primary = fgen:new_handle(a.child_primary),
        primary_purge = fgen:new_handle(a.child_primary),
        gutter = fgen:new_handle(a.child_gutter),
        fence_look = fgen:new_handle(mcp.internal_handler),
        fence_add = fgen:new_handle(mcp.internal_handler),
        fence_drop = fgen:new_handle(mcp.internal_handler),
        fence_s = a.fence_s,
    }
    fgen:ready({ a = o, n = ctx:label(), f = route_mcfleet_failover_f })
end

function route_mcfleet_failover_f(rctx, o)
    local primary, primary_purge, gutter = o.primary, o.primary_purge, o.gutter
    local fence_look, fence_add, fence_drop = o.fence_look, o.fence_add, o.fence_drop
    local request = mcp.request
    local READS <const> = { [mcp.CMD_GET] = true, [mcp.CMD_GETS] = true, [mcp.CMD_MG] = true }
    local fence_flags = " 1 T" .. o.fence_s .. "\r\n"

    local function fence(key)
        rctx:enqueue_and_wait(request("ms " .. key .. fence_flags, "1\r\n"), fence_add)
    end

    -- A fenced key: its newest value is the gutter's. Should the gutter fail, the primary
    -- answers: by then the journal's replay has deleted its older copy (a maintenance takes
    -- the gutter out only after the shards' windows), so it can answer a miss, never stale.
    local function fenced(r, key, read)
        if read then
            local res = rctx:enqueue_and_wait(r, gutter)
            if res:ok() then
                return res
            end
            return rctx:enqueue_and_wait(r, primary)
        end
        -- When the fence ends the primary must hold nothing older than the gutter: delete its
        -- copy first. If it cannot be reached, the journal has the write to replay, and the
        -- fence is renewed to cover that replay.
        local purged = rctx:enqueue_and_wait(request("md " .. key .. "\r\n"), primary_purge)
        if not purged:ok() then
            fence(key)
            return rctx:enqueue_and_wait(r, gutter)
        end
        local res = rctx:enqueue_and_wait(r, gutter)
        if res:ok() then
            return res
        end
        -- The gutter failed and the primary is back: the key returns to its primary.
        rctx:enqueue_and_wait(request("md " .. key .. "\r\n"), fence_drop)
        return rctx:enqueue_and_wait(r, primary)
    end

    return function(r)
        local key = r:key()
        local read = READS[r:command()]
        if rctx:enqueue_and_wait(request("mg " .. key .. "\r\n"), fence_look):hit() then
            return fenced(r, key, read)
        end
        local res = rctx:enqueue_and_wait(r, primary)
        if res:ok() then
            return res
        end
        if not read then
            -- Fenced before the gutter acknowledges, so no read after the acknowledgement misses it.
            fence(key)
        end
        return rctx:enqueue_and_wait(r, gutter)
    end
end
