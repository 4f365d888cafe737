"""Cross-datacentre replication, measured: writes through a router, arrival on the other side.

`check_replication()` writes keys with the broadcast prefix (/*/mw-wan/KEY) through a router,
one at a time, and times each until it is visible on the other datacentre's main shards
(read directly, without the prefix: routers store keys stripped, as mcrouter does); then
deletes it the same way and times its disappearance. A key not there within `deadline_s` is
lost: the remote leg is asynchronous (mcrouter's AllAsyncRoute, the proxy's route_allasync)
and does not retry. Used by the proxy drill (plugins/modules/replication_check.py) and by
molecule/proxies/proxy_probe.py.
"""

from __future__ import annotations

import os
import time

from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import (
    MemcacheClient,
    MemcacheError,
)

BROADCAST_PREFIX = "/*/mw-wan/"
POLL_S = 0.0005


def quantile(values, fraction):
    """The value at `fraction` of the sorted values (nearest rank), rounded to µs; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 3)


def holders(shards, key):
    """{shard index: value} of the shards that hold `key`."""
    found = {}
    for index, shard in enumerate(shards):
        value = shard.get(key)
        if value is not None:
            found[index] = value
    return found


def wait_for(shards, key, present, deadline):
    """True once `key` is present (or absent) on the shards; False past `deadline` (monotonic)."""
    while True:
        if bool(holders(shards, key)) == present:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def check_replication(router, remote_shards, count, deadline_s=3.0, tag=None, local_shards=(), reader=None):
    """Write and delete `count` keys through `router`; count and time what reached `remote_shards`.

    `router`, `reader`: MemcacheClient; `remote_shards`, `local_shards`: lists of them.
    `reader` (optional) is a router of the other datacentre: each arrived key must read back
    through it, i.e. sit on the shard that datacentre's own routing picks. Returns counts
    (attempted, acknowledged, set_arrived, set_arrived_late, set_lost, delete_arrived,
    delete_lost, local_missing, wrong_shard, on_more_than_one_shard), keys per remote shard,
    delays in ms (p50, p99) and the first errors. Deletes are measured for keys that arrived.
    """
    tag = tag or f"repl-{os.getpid()}-{int(time.time() * 1000)}"
    set_delays, delete_delays, errors = [], [], []
    counts = dict.fromkeys(
        ("acknowledged", "set_lost", "delete_lost", "local_missing", "wrong_shard", "on_more_than_one_shard"),
        0,
    )
    per_shard = [0] * len(remote_shards)
    # Once a key is lost, later ones are not waited for one by one (a cut-off datacentre
    # would cost deadline_s per key): they are looked for once more at the end, after one
    # more deadline_s, and counted as arrived late or lost.
    waiting, late_candidates = True, []
    for index in range(count):
        key, value = f"{tag}-{index}", f"v{index}-{tag}"
        start = time.monotonic()
        try:
            counts["acknowledged"] += bool(router.set(BROADCAST_PREFIX + key, value))
        except MemcacheError as error:
            errors.append(f"set {key}: {error}")
            router.close()
            continue
        arrived = wait_for(remote_shards, key, True, start + (deadline_s if waiting else 0))
        # The local leg is synchronous: the value is there once the router answered.
        counts["local_missing"] += bool(local_shards) and not holders(local_shards, key)
        if not arrived:
            late_candidates.append(key)
            waiting = False
            continue
        waiting = True
        set_delays.append((time.monotonic() - start) * 1000)
        found = holders(remote_shards, key)
        counts["on_more_than_one_shard"] += len(found) > 1
        for shard_index in found:
            per_shard[shard_index] += 1
        if reader is not None and reader.get(key) != value.encode():
            counts["wrong_shard"] += 1
        start = time.monotonic()
        try:
            router.delete(BROADCAST_PREFIX + key)
        except MemcacheError as error:
            errors.append(f"delete {key}: {error}")
            router.close()
            continue
        if wait_for(remote_shards, key, False, start + deadline_s):
            delete_delays.append((time.monotonic() - start) * 1000)
        else:
            counts["delete_lost"] += 1
        counts["local_missing"] += bool(local_shards and holders(local_shards, key))
    if late_candidates:
        time.sleep(deadline_s)
    late = [key for key in late_candidates if holders(remote_shards, key)]
    counts["set_lost"] = len(late_candidates) - len(late)
    for key in late_candidates:
        try:
            router.delete(BROADCAST_PREFIX + key)
        except MemcacheError as error:
            errors.append(f"delete {key}: {error}")
            router.close()
    return {
        "attempted": count,
        **counts,
        "set_arrived": len(set_delays) + len(late),
        "set_arrived_late": len(late),
        "delete_arrived": len(delete_delays),
        "keys_per_remote_shard": per_shard,
        "set_delay_ms": {"p50": quantile(set_delays, 0.5), "p99": quantile(set_delays, 0.99)},
        "delete_delay_ms": {"p50": quantile(delete_delays, 0.5), "p99": quantile(delete_delays, 0.99)},
        "errors": errors[:10],
        "tag": tag,
    }


def clients(entries, timeout_s=2.0, read_protocol="text"):
    """MemcacheClients for model entries ({address, port})."""
    return [
        MemcacheClient(entry["address"], entry["port"], timeout_s=timeout_s, read_protocol=read_protocol)
        for entry in entries
    ]
