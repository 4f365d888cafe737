"""Probe a router from the controller: where do keys written through it land?

Used by molecule/router/verify.yml (issue 3, item 6). Every figure is read from the real
servers: keys are written through the router with their routing prefix, then looked up
on each main shard and gutter server directly, with the prefix stripped (that is how
the router stores them). Prints one JSON document; verify.yml asserts on it.

    router_probe.py spread   --model JSON --router HOST --count N --keys-file PATH
    router_probe.py failover --model JSON --router HOST --blocked SHARD --keys-file PATH
    router_probe.py rejoin   --model JSON --router HOST --blocked SHARD --keys-file PATH
"""

import argparse
import json
import socket
import sys
import time
from pathlib import Path

from pymemcache.client.base import Client

# The project's own client reads through the router in the protocol its engine answers
# correctly (meta through memcached's proxy: its text get replies carry the stripped key).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "module_utils"))
from memcache_client import READ_PROTOCOLS, MemcacheClient, MemcacheError

TIMEOUT_S = 2.0
BATCH = 100


def client(entry):
    return Client((entry["address"], entry["port"]), connect_timeout=TIMEOUT_S, timeout=TIMEOUT_S)


def servers(model, router_host):
    """The router, its datacentre's main shards and gutter servers, and its routing prefix."""
    router = model["routers"][router_host]
    dc = model["datacentres"][router["datacentre"]]
    return router, dc["main"], dc["gutter"], dc["route_prefix"]


def holders(entries, keys):
    """{key: [hosts holding it]} for `keys`, read directly from each server in `entries`."""
    found = {key: [] for key in keys}
    for entry in entries:
        with_client = client(entry)
        for start in range(0, len(keys), BATCH):
            for key in with_client.get_many(keys[start : start + BATCH]):
                found[key].append(entry["host"])
        with_client.close()
    return found


def remaining_ttl(entry, key):
    """Seconds left before `key` expires on one server (meta get `t`); None if absent, -1 if never."""
    with socket.create_connection((entry["address"], entry["port"]), timeout=TIMEOUT_S) as sock:
        sock.sendall(f"mg {key} t\r\n".encode())
        reply = sock.recv(4096).decode()
    if reply.startswith("EN"):
        return None
    for token in reply.split()[1:]:
        if token.startswith("t"):
            return int(token[1:])
    raise ValueError(f"meta get of {key} on {entry['host']} returned no TTL: {reply!r}")


def write_through(router, prefix, keys, value_of, expire=0):
    """Set every key through the router; return the keys it did not acknowledge."""
    with_client = client(router)
    failed = []
    for key in keys:
        try:
            if not with_client.set(prefix + key, value_of(key), expire=expire, noreply=False):
                failed.append(key)
        except Exception:  # any client error is a failed write to report
            failed.append(key)
            with_client.close()
    with_client.close()
    return failed


def read_through(router, prefix, keys):
    """{key: value or None} read through the router one key at a time, and the keys that errored."""
    with_client = MemcacheClient(
        router["address"], router["port"], timeout_s=TIMEOUT_S, read_protocol=READ_PROTOCOLS[router["engine"]]
    )
    values, errors = {}, []
    for key in keys:
        try:
            value = with_client.get(prefix + key)
            values[key] = value.decode() if value is not None else None
        except MemcacheError:  # the client has dropped the connection; the next get reconnects
            errors.append(key)
    with_client.close()
    return values, errors


def spread(model, router_host, count, keys_file):
    """Write `count` keys through the router and count where each one landed."""
    router, main, gutter, prefix = servers(model, router_host)
    for entry in main + gutter:
        client(entry).flush_all(noreply=False)
    keys = [f"mcfleet-spread-{i:05d}" for i in range(count)]
    failed = write_through(router, prefix, keys, lambda key: f"v1-{key}")
    found = holders(main + gutter, keys)
    per_server = {entry["host"]: 0 for entry in main + gutter}
    by_shard = {entry["host"]: [] for entry in main}
    for key, hosts in found.items():
        for host in hosts:
            per_server[host] += 1
        if len(hosts) == 1 and hosts[0] in by_shard:
            by_shard[hosts[0]].append(key)
    with open(keys_file, "w") as handle:
        json.dump(by_shard, handle)
    gutter_hosts = {entry["host"] for entry in gutter}
    return {
        "written": count,
        "write_failures": len(failed),
        "per_server": per_server,
        "share": {host: per_server[host] / count for host in by_shard},
        "on_gutter": sum(per_server[host] for host in gutter_hosts),
        "unplaced": sum(1 for hosts in found.values() if not hosts),
        "on_several": sum(1 for hosts in found.values() if len(hosts) > 1),
    }


def failover(model, router_host, blocked, keys_file, sample):
    """With `blocked` unreachable: writes and reads of its keys go to the gutter, with the gutter TTL."""
    router, main, gutter, prefix = servers(model, router_host)
    ttl = model["gutter_ttl_s"]
    with open(keys_file) as handle:
        by_shard = json.load(handle)
    blocked_keys = by_shard[blocked][:sample]
    other_keys = [key for host, keys in sorted(by_shard.items()) if host != blocked for key in keys[:50]]
    gutter_hosts = {entry["host"] for entry in gutter}
    # The blocked shard refuses connections from the controller too.
    reachable = [entry for entry in main if entry["host"] != blocked] + gutter

    def new_value(key):
        return f"v2-{key}"

    failed = write_through(router, prefix, blocked_keys, new_value)
    # Timed from the last write and read first: on a loaded machine the checks below can take
    # seconds, which must neither expire the first keys before their TTL is read nor end the
    # wait below before the last key's TTL is out.
    last_written = time.monotonic()
    ttls = [remaining_ttl(gutter[0], key) for key in blocked_keys[:20]]
    other_failed = write_through(router, prefix, other_keys, new_value)
    values, read_errors = read_through(router, prefix, blocked_keys)
    stale_or_missing = sorted(key for key, value in values.items() if value != new_value(key))
    found = holders(reachable, blocked_keys)
    on_gutter = sum(1 for hosts in found.values() if set(hosts) & gutter_hosts)
    other_found = holders(reachable, other_keys)
    others_on_home = sum(1 for key, hosts in other_found.items() if hosts and not set(hosts) & gutter_hosts)

    # Wait out the gutter TTL from the last write (plus 2 s: memcached's clock ticks in whole
    # seconds) and look again.
    time.sleep(max(0.0, ttl + 2 - (time.monotonic() - last_written)))
    left_on_gutter = sum(1 for hosts in holders(gutter, blocked_keys).values() if hosts)
    after_values, after_errors = read_through(router, prefix, blocked_keys)
    return {
        "blocked": blocked,
        "gutter_ttl_s": ttl,
        "sample": len(blocked_keys),
        "write_failures": len(failed),
        "read_errors": len(read_errors),
        "read_wrong_value": len(stale_or_missing),
        "read_wrong_examples": stale_or_missing[:5],
        "on_gutter": on_gutter,
        "other_shards_sample": len(other_keys),
        "other_shards_write_failures": len(other_failed),
        "other_shards_on_home": others_on_home,
        "gutter_ttl_seen_max": max((t for t in ttls if t is not None), default=None),
        "gutter_ttl_seen_min": min((t for t in ttls if t is not None), default=None),
        "gutter_ttl_missing": sum(1 for t in ttls if t is None),
        "left_on_gutter_after_ttl": left_on_gutter,
        "hits_through_router_after_ttl": sum(1 for value in after_values.values() if value is not None),
        "read_errors_after_ttl": len(after_errors),
    }


def rejoin(model, router_host, blocked, keys_file, timeout_s):
    """After unblocking: wait until a key of `blocked` written through the router lands on it again."""
    router, main, _, prefix = servers(model, router_host)
    with open(keys_file) as handle:
        key = json.load(handle)[blocked][0]
    shard = next(entry for entry in main if entry["host"] == blocked)
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if not write_through(router, prefix, [key], lambda k: f"v3-{k}") and holders([shard], [key])[key]:
            return {"blocked": blocked, "readmitted_after_s": round(time.monotonic() - started, 2)}
        time.sleep(0.5)
    return {"blocked": blocked, "readmitted_after_s": None}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("spread", "failover", "rejoin"))
    parser.add_argument("--model", required=True, help="the mcfleet topology model, as JSON")
    parser.add_argument("--router", required=True, help="inventory name of the router to write through")
    parser.add_argument("--keys-file", required=True, help="where spread records each shard's keys")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--blocked", help="inventory name of the unavailable shard")
    parser.add_argument("--sample", type=int, default=200, help="blocked-shard keys to probe")
    parser.add_argument("--timeout", type=float, default=30.0, help="rejoin: seconds to wait")
    args = parser.parse_args(argv)
    model = json.loads(args.model)
    if args.mode == "spread":
        result = spread(model, args.router, args.count, args.keys_file)
    elif args.mode == "failover":
        result = failover(model, args.router, args.blocked, args.keys_file, args.sample)
    else:
        result = rejoin(model, args.router, args.blocked, args.keys_file, args.timeout)
    json.dump(result, sys.stdout, indent=2, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
