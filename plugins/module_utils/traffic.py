"""Bounded client traffic through a router, recorded as a JSONL timeline.

A drill needs the client's view: how many requests failed, how slow they were, and when
the gutter started answering. `run()` sends a paced mix of set, delete and get on a small
key set through the router until the first of: `max_requests`, `max_duration_s`, or a stop
file appearing. Both bounds are mandatory and capped. Targets must be loopback or inside
the configured lab networks: this is a load generator, and must never be pointed at a
production router by accident.

Timeline lines (one JSON object each):
- `{"kind": "start", "t": ..., "plan": {...}}`
- `{"kind": "req", "t": <unix start>, "op": "set"|"delete"|"get", "k": <key index>, "ms": <latency>,
  "r": "ok"|"miss"|"error"|"timeout"}`, and on a get that read something other than the
  client's last acknowledged write, `"v": "stale"` (an older value) or `"v": "resurrected"`
  (a value after an acknowledged delete). Each value carries the number of the request
  that wrote it; a write that got no acknowledgement may or may not have happened, so the
  values it could have left are accepted too. A miss is never wrong for a cache.
- `{"kind": "gutter", "t": ..., "get_hits": N, "get_misses": N, "cmd_set": N, "down": [...]}`
  (counters summed over the gutter servers, sampled about once a second: their deltas show
  when, and how much, the gutter served)
- `{"kind": "end", "t": ..., "requests": N, "stop_reason": ...}`

`run_cache_aside()` is the LRU comparison's load: gets of Zipf-distributed keys, a set
after each miss, several threads, the same bounds and address checks; its timeline has one
`{"kind": "second", ...}` line of running totals a second instead of one line per request.

"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import json
import math
import os
import random
import socket
import threading
import time

from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import (
    READ_PROTOCOLS,
    MemcacheClient,
    MemcacheError,
    MemcacheTimeout,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.safe_files import open_new

LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
# A rolling maintenance's traffic lasts as long as the run: a datacentre of 20 hosts takes hours.
MAX_DURATION_S = 86400
MAX_REQUESTS = 5_000_000
MAX_RATE_PER_S = 20_000
OUTCOMES = ("ok", "miss", "error", "timeout")


class TrafficError(Exception):
    """The plan is unsafe or invalid; nothing was sent."""


def resolve_allowed(host: str, allowed_networks: list[str]) -> str:
    """The address to connect to, refusing anything outside loopback and the lab networks.

    Every address the name resolves to must be allowed, so a name cannot sneak traffic out.
    """
    networks = []
    for net in [*LOOPBACK_NETWORKS, *allowed_networks]:
        try:
            networks.append(ipaddress.ip_network(net, strict=False))
        except ValueError as exc:
            raise TrafficError(f"allowed_networks: {net!r} is not a network: {exc}") from exc
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise TrafficError(f"cannot resolve {host!r}: {exc}") from exc
    addresses = sorted({info[4][0] for info in infos})
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not any(ip.version == net.version and ip in net for net in networks):
            allowed = ", ".join([*LOOPBACK_NETWORKS, *allowed_networks])
            raise TrafficError(f"refusing to send traffic to {host} ({address}): not inside {allowed}")
    return addresses[0]


def plan_problems(plan: dict) -> list[str]:
    """Every problem with the bounds and the mix, at once."""
    problems = []
    bounds = {
        "max_duration_s": (0, MAX_DURATION_S),
        "max_requests": (0, MAX_REQUESTS),
        "rate_per_s": (0, MAX_RATE_PER_S),
        "timeout_s": (0, 60),
    }
    for name, (low, high) in bounds.items():
        value = plan.get(name)
        if value is None or not low < value <= high:
            problems.append(f"{name} must be in ({low}, {high}], got {value!r}")
    if not 1 <= plan.get("key_count", 0) <= 100_000:
        problems.append(f"key_count must be in [1, 100000], got {plan.get('key_count')!r}")
    if not 0 <= plan.get("set_ratio", -1) <= 1:
        problems.append(f"set_ratio must be in [0, 1], got {plan.get('set_ratio')!r}")
    if not 0 <= plan.get("delete_ratio", 0) <= 1 - min(max(plan.get("set_ratio", 0), 0), 1):
        problems.append(f"delete_ratio must be in [0, 1 - set_ratio], got {plan.get('delete_ratio')!r}")
    if not 1 <= plan.get("value_bytes", 0) <= 1_000_000:
        problems.append(f"value_bytes must be in [1, 1000000], got {plan.get('value_bytes')!r}")
    engine = (plan.get("router") or {}).get("engine") or "mcrouter"
    if engine not in READ_PROTOCOLS:
        problems.append(f"router engine must be one of {', '.join(READ_PROTOCOLS)}, got {engine!r}")
    prefix = plan.get("route_prefix", "")
    if prefix and not (prefix.startswith("/") and prefix.endswith("/")):
        problems.append(f"route_prefix must look like /<dc>/<cluster>/ (or be empty), got {prefix!r}")
    return problems


def default_plan(**overrides) -> dict:
    plan = {
        "router": None,  # {"address": ..., "port": ..., "engine": "mcrouter"|"memcached_proxy"}
        "route_prefix": "/eqiad/mw/",
        "gutter": [],  # [{"address": ..., "port": ...}]
        "run_id": time.strftime("%Y%m%dT%H%M%S"),
        "key_count": 200,
        "set_ratio": 0.3,
        "delete_ratio": 0.0,
        "value_bytes": 100,
        "rate_per_s": 200,
        "max_requests": 60_000,
        "max_duration_s": 300,
        "timeout_s": 1.0,
        "stats_interval_s": 1.0,
        "allowed_networks": [],
        "timeline": None,
        "stop_file": None,
        "seed": None,
    }
    plan.update(overrides)
    return plan


def check_plan(plan: dict, problems_of=None) -> dict:
    """Validates the plan (with `problems_of`, plan_problems by default) and resolves every
    target; returns {router, gutter} addresses."""
    problems = (problems_of or plan_problems)(plan)
    if not plan.get("router"):
        problems.append("router is required")
    if not plan.get("timeline"):
        problems.append("timeline is required")
    if problems:
        raise TrafficError("; ".join(problems))
    allowed = list(plan.get("allowed_networks") or [])
    router = (resolve_allowed(plan["router"]["address"], allowed), int(plan["router"]["port"]))
    gutter = [(resolve_allowed(g["address"], allowed), int(g["port"])) for g in plan.get("gutter") or []]
    return {"router": router, "gutter": gutter}


def _sample_gutter(clients: list[MemcacheClient]) -> dict:
    sample = {
        "kind": "gutter",
        "t": round(time.time(), 4),
        "get_hits": 0,
        "get_misses": 0,
        "cmd_set": 0,
        "down": [],
    }
    for client in clients:
        try:
            stats = client.stats()
        except MemcacheError:
            sample["down"].append(client.address)
            continue
        for name in ("get_hits", "get_misses", "cmd_set"):
            sample[name] += int(stats.get(name, 0))
    return sample


class ReadOracle:
    """What a get may read, from this client's own writes: the last acknowledged set's value,
    or nothing after an acknowledged delete; besides, any value of a write that was never
    acknowledged (it may have landed, even late). A key never written by this run is not judged."""

    def __init__(self):
        self.last: dict[int, int | None] = {}
        self.unacknowledged: dict[int, set[int]] = {}

    def wrote(self, index: int, number: int | None, acknowledged: bool) -> None:
        """`number` None is a delete."""
        if acknowledged:
            self.last[index] = number
        elif number is not None:
            self.unacknowledged.setdefault(index, set()).add(number)
        else:
            self.last.pop(index, None)

    def judge(self, index: int, value: bytes | None) -> str | None:
        """None when the read is right, else "stale" or "resurrected"."""
        if value is None or index not in self.last:
            return None
        number = _value_number(value)
        if number is None or number == self.last[index] or number in self.unacknowledged.get(index, ()):
            return None
        return "resurrected" if self.last[index] is None else "stale"


def _value_number(value: bytes) -> int | None:
    head = value.split(b":", 1)[0]
    return int(head) if head.isdigit() else None


def traffic_keys(plan: dict) -> list[str]:
    """The keys a run sends, by index (the timeline's "k")."""
    return [f"{plan['route_prefix']}mcfleet-traffic-{plan['run_id']}-{i}" for i in range(plan["key_count"])]


def run(plan: dict) -> dict:
    """Sends the traffic and writes the timeline; returns a summary. Always bounded."""
    targets = check_plan(plan)
    rng = random.Random(plan.get("seed"))
    # Gets through the router in the protocol its engine answers with the key asked for.
    read_protocol = READ_PROTOCOLS[plan["router"].get("engine") or "mcrouter"]
    router = MemcacheClient(*targets["router"], timeout_s=plan["timeout_s"], read_protocol=read_protocol)
    gutter = [MemcacheClient(*g, timeout_s=plan["timeout_s"]) for g in targets["gutter"]]
    keys = traffic_keys(plan)
    filler = "x" * plan["value_bytes"]
    counts = dict.fromkeys(OUTCOMES, 0)
    wrong_reads = {"stale": 0, "resurrected": 0}
    oracle = ReadOracle()
    latencies: list[float] = []
    stop_file = plan.get("stop_file")
    interval = 1.0 / plan["rate_per_s"]
    started = time.monotonic()
    deadline = started + plan["max_duration_s"]
    next_stats = started
    next_stop_check = started
    stop_reason = "max_requests"
    sent = 0
    with open_new(plan["timeline"]) as timeline:
        public_plan = {k: v for k, v in plan.items() if k != "seed"}
        timeline.write(json.dumps({"kind": "start", "t": round(time.time(), 4), "plan": public_plan}) + "\n")
        while sent < plan["max_requests"]:
            now = time.monotonic()
            if now >= deadline:
                stop_reason = "max_duration_s"
                break
            if stop_file and now >= next_stop_check:
                next_stop_check = now + 0.2
                if os.path.exists(stop_file):
                    stop_reason = "stop_file"
                    break
            if gutter and now >= next_stats:
                next_stats = now + plan["stats_interval_s"]
                timeline.write(json.dumps(_sample_gutter(gutter)) + "\n")
            # Paced: request n is due at start + n/rate; a slow reply delays, never bursts.
            due = started + sent * interval
            if due > now:
                time.sleep(min(due - now, max(0.0, deadline - now)))
            index = rng.randrange(len(keys))
            draw = rng.random()
            op = (
                "set"
                if draw < plan["set_ratio"]
                else "delete"
                if draw < plan["set_ratio"] + plan.get("delete_ratio", 0)
                else "get"
            )
            wall = time.time()
            tick = time.perf_counter()
            verdict = None
            try:
                if op == "set":
                    outcome = "ok" if router.set(keys[index], f"{sent}:{filler}") else "error"
                elif op == "delete":
                    router.delete(keys[index])  # DELETED and NOT_FOUND both acknowledge it
                    outcome = "ok"
                else:
                    value = router.get(keys[index])
                    outcome = "ok" if value is not None else "miss"
                    verdict = oracle.judge(index, value)
            except MemcacheTimeout:
                outcome = "timeout"
            except MemcacheError:
                outcome = "error"
            if op != "get":
                oracle.wrote(index, sent if op == "set" else None, outcome == "ok")
            latency_ms = (time.perf_counter() - tick) * 1000
            sent += 1
            counts[outcome] += 1
            latencies.append(latency_ms)
            line = {
                "kind": "req",
                "t": round(wall, 4),
                "op": op,
                "k": index,
                "ms": round(latency_ms, 3),
                "r": outcome,
            }
            if verdict:
                wrong_reads[verdict] += 1
                line["v"] = verdict
            timeline.write(json.dumps(line) + "\n")
        if gutter:
            timeline.write(json.dumps(_sample_gutter(gutter)) + "\n")
        duration = time.monotonic() - started
        timeline.write(
            json.dumps(
                {"kind": "end", "t": round(time.time(), 4), "requests": sent, "stop_reason": stop_reason}
            )
            + "\n"
        )
    router.close()
    for client in gutter:
        client.close()
    return {
        "requests": sent,
        "outcomes": counts,
        "client_errors": counts["error"] + counts["timeout"],
        "stale_reads": wrong_reads["stale"],
        "resurrected_reads": wrong_reads["resurrected"],
        "duration_s": round(duration, 3),
        "requests_per_s": round(sent / duration, 1) if duration > 0 else 0.0,
        "latency_ms": latency_summary(latencies),
        "stop_reason": stop_reason,
        "timeline": plan["timeline"],
    }


# -- reading a timeline back ---------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def latency_summary(latencies: list[float]) -> dict:
    if not latencies:
        return {"requests": 0, "p50": None, "p99": None, "max": None}
    return {
        "requests": len(latencies),
        "p50": round(percentile(latencies, 0.50), 3),
        "p99": round(percentile(latencies, 0.99), 3),
        "max": round(max(latencies), 3),
    }


def load_timeline(path: str) -> dict:
    """{start, end, requests: [...], gutter: [...]} from a timeline file (tolerates a torn last line)."""
    loaded = {"start": None, "end": None, "requests": [], "gutter": []}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the generator was killed mid-line
            kind = record.get("kind")
            if kind == "req":
                loaded["requests"].append(record)
            elif kind == "gutter":
                loaded["gutter"].append(record)
            elif kind in ("start", "end"):
                loaded[kind] = record
    return loaded


def per_second(timeline: dict, origin: float | None = None) -> list[dict]:
    """One row per second since `origin` (default: the first request): requests/s, errors/s,
    timeouts/s, misses/s, p50/p99 latency, and gutter get hits/misses in that second."""
    reqs = timeline["requests"]
    if origin is None:
        origin = reqs[0]["t"] if reqs else (timeline["start"] or {}).get("t", 0.0)
    last = max([r["t"] for r in reqs] + [g["t"] for g in timeline["gutter"]] + [origin])
    rows = [
        {
            "second": s,
            "requests": 0,
            "errors": 0,
            "timeouts": 0,
            "misses": 0,
            "gutter_hits": 0,
            "gutter_misses": 0,
        }
        for s in range(int(last - origin) + 1)
    ]
    latencies: list[list[float]] = [[] for _row in rows]
    for req in reqs:
        s = int(req["t"] - origin)
        if not 0 <= s < len(rows):
            continue
        rows[s]["requests"] += 1
        rows[s]["errors"] += int(req["r"] == "error")
        rows[s]["timeouts"] += int(req["r"] == "timeout")
        rows[s]["misses"] += int(req["r"] == "miss")
        latencies[s].append(req["ms"])
    # Counter deltas between consecutive samples, credited to the later sample's second.
    samples = timeline["gutter"]
    for prev, cur in itertools.pairwise(samples):
        s = int(cur["t"] - origin)
        if 0 <= s < len(rows):
            rows[s]["gutter_hits"] += max(0, cur["get_hits"] - prev["get_hits"])
            rows[s]["gutter_misses"] += max(0, cur["get_misses"] - prev["get_misses"])
    for row, lat in zip(rows, latencies, strict=True):
        row["p50_ms"] = percentile(lat, 0.50)
        row["p99_ms"] = percentile(lat, 0.99)
    return rows


def steady_p99(rows: list[dict]) -> float | None:
    """The median of per-second p99 latencies (rows of per_second), in ms; None without requests.
    One scheduling stall on a shared machine moves one second's p99, not this figure."""
    values = sorted(row["p99_ms"] for row in rows if row["p99_ms"] is not None)
    return values[len(values) // 2] if values else None


def client_errors(path: str, start: float | None = None, end: float | None = None) -> dict:
    """Requests and client errors (errors and timeouts) in the timeline between two times."""
    timeline = load_timeline(path)
    window = [
        request
        for request in timeline["requests"]
        if (start is None or request["t"] >= start) and (end is None or request["t"] < end)
    ]
    errors = sum(1 for request in window if request["r"] in ("error", "timeout"))
    return {
        "requests": len(window),
        "errors": errors,
        "error_rate": errors / len(window) if window else 0.0,
        "stale_reads": sum(1 for request in window if request.get("v") == "stale"),
        "resurrected_reads": sum(1 for request in window if request.get("v") == "resurrected"),
    }


# -- cache-aside load with a skewed key popularity (the LRU comparison's load) --------

# Zipf exponents seen in cache traces are about 0.6-1.2 (Breslau et al., "Web Caching and
# Zipf-like Distributions", INFOCOM 1999); 0.9 by default.
ZIPF_S_RANGE = (0.0, 2.0)
LOAD_MAX_THREADS = 8
LOAD_MAX_KEYS = 2_000_000


def zipf_cumulative(key_count: int, s: float) -> list[float]:
    """Cumulative weights of ranks 1..key_count with P(rank k) proportional to 1/k**s."""
    return list(itertools.accumulate(1.0 / (rank**s) for rank in range(1, key_count + 1)))


def zipf_index(cumulative: list[float], draw: float) -> int:
    """The key index (0 = most popular) for a uniform draw in [0, 1)."""
    return min(bisect.bisect_right(cumulative, draw * cumulative[-1]), len(cumulative) - 1)


def value_bytes_of(index: int, low: int, high: int) -> int:
    """A key's value size: fixed per key, log-uniform in [low, high] over the keys (so every
    slab class between the two gets items), from a multiplicative hash of the index."""
    fraction = ((index * 2654435761) % 4294967296) / 4294967296
    return round(low * (high / low) ** fraction)


def load_plan_problems(plan: dict) -> list[str]:
    # The key set may be larger than the mixed traffic's: it must outgrow the servers' memory.
    problems = plan_problems(
        {**plan, "set_ratio": 0, "value_bytes": plan.get("value_bytes_max", 0), "key_count": 1}
    )
    keys = plan.get("key_count")
    if not isinstance(keys, int) or not 1 <= keys <= LOAD_MAX_KEYS:
        problems.append(f"key_count must be in [1, {LOAD_MAX_KEYS}], got {keys!r}")
    s = plan.get("zipf_s")
    if not isinstance(s, (int, float)) or not ZIPF_S_RANGE[0] <= s <= ZIPF_S_RANGE[1]:
        problems.append(f"zipf_s must be in [{ZIPF_S_RANGE[0]}, {ZIPF_S_RANGE[1]}], got {s!r}")
    low, high = plan.get("value_bytes_min"), plan.get("value_bytes_max")
    if not isinstance(low, int) or not isinstance(high, int) or not 1 <= low <= high:
        problems.append(f"value_bytes_min/max must satisfy 1 <= min <= max, got {low!r}/{high!r}")
    threads = plan.get("threads")
    if not isinstance(threads, int) or not 1 <= threads <= LOAD_MAX_THREADS:
        problems.append(f"threads must be in [1, {LOAD_MAX_THREADS}], got {threads!r}")
    return problems


def default_load_plan(**overrides) -> dict:
    plan = default_plan(
        key_count=90_000,
        rate_per_s=3000,
        max_requests=1_000_000,
        max_duration_s=600,
    )
    plan.update({"zipf_s": 0.9, "value_bytes_min": 100, "value_bytes_max": 4000, "threads": 4})
    plan.update(overrides)
    return plan


def run_cache_aside(plan: dict) -> dict:
    """Gets of Zipf-distributed keys through the router; a miss is followed by a set of the
    key's value (what an application in front of a cache does). Bounded like run(): the first
    of max_requests, max_duration_s or the stop file ends it. The timeline holds one line a
    second (gets, hits, misses, sets, errors) between its start and end lines."""
    targets = check_plan(plan, load_plan_problems)
    cumulative = zipf_cumulative(plan["key_count"], float(plan["zipf_s"]))
    prefix = plan["route_prefix"]
    read_protocol = READ_PROTOCOLS[plan["router"].get("engine") or "mcrouter"]
    threads = plan["threads"]
    totals = {"gets": 0, "hits": 0, "misses": 0, "sets": 0, "errors": 0}
    lock = threading.Lock()
    stop = threading.Event()
    started = time.monotonic()
    deadline = started + plan["max_duration_s"]
    per_thread_requests = plan["max_requests"] // threads
    interval = threads / plan["rate_per_s"]
    stop_reason = {"value": "max_requests"}

    def worker(number: int) -> None:
        rng = random.Random(None if plan.get("seed") is None else plan["seed"] + number)
        client = MemcacheClient(*targets["router"], timeout_s=plan["timeout_s"], read_protocol=read_protocol)
        counts = dict.fromkeys(totals, 0)
        try:
            for sent in range(per_thread_requests):
                if stop.is_set():
                    return
                now = time.monotonic()
                if now >= deadline:
                    stop_reason["value"] = "max_duration_s"
                    return
                due = started + sent * interval
                if due > now:
                    time.sleep(due - now)
                index = zipf_index(cumulative, rng.random())
                key = f"{prefix}lru-{plan['run_id']}-{index}"
                try:
                    counts["gets"] += 1
                    if client.get(key) is not None:
                        counts["hits"] += 1
                        continue
                    counts["misses"] += 1
                    size = value_bytes_of(index, plan["value_bytes_min"], plan["value_bytes_max"])
                    client.set(key, b"v" * size)
                    counts["sets"] += 1
                except MemcacheError:
                    counts["errors"] += 1
                if sent % 200 == 0:
                    with lock:
                        for name, value in counts.items():
                            totals[name] += value
                    counts = dict.fromkeys(totals, 0)
        finally:
            client.close()
            with lock:
                for name, value in counts.items():
                    totals[name] += value

    workers = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    with open_new(plan["timeline"]) as timeline:
        public_plan = {k: v for k, v in plan.items() if k != "seed"}
        timeline.write(json.dumps({"kind": "start", "t": round(time.time(), 4), "plan": public_plan}) + "\n")
        for thread in workers:
            thread.start()
        stop_file = plan.get("stop_file")
        while any(thread.is_alive() for thread in workers):
            time.sleep(1.0)
            if stop_file and os.path.exists(stop_file):
                stop_reason["value"] = "stop_file"
                stop.set()
            with lock:
                timeline.write(json.dumps({"kind": "second", "t": round(time.time(), 4), **totals}) + "\n")
            timeline.flush()
        for thread in workers:
            thread.join()
        duration = time.monotonic() - started
        timeline.write(
            json.dumps(
                {"kind": "end", "t": round(time.time(), 4), **totals, "stop_reason": stop_reason["value"]}
            )
            + "\n"
        )
    requests = totals["gets"] + totals["sets"]
    return {
        "requests": requests,
        **totals,
        "client_errors": totals["errors"],
        "hit_ratio": round(totals["hits"] / totals["gets"], 4) if totals["gets"] else None,
        "key_count": plan["key_count"],
        "zipf_s": plan["zipf_s"],
        "duration_s": round(duration, 3),
        "requests_per_s": round(requests / duration, 1) if duration > 0 else 0.0,
        "stop_reason": stop_reason["value"],
        "timeline": plan["timeline"],
    }
