"""The rolling maintenance's progress log: one JSON line per host and step, on the controller.

It is what the operator sees (one line per shard and step, elapsed time, an estimated
finish once a first host is done), what the report is built from, and what remains when a
run is interrupted.
"""

from __future__ import annotations

import json
import os
import time

# The per-host steps, in order (playbooks/tasks/maintain_memcached_host.yml).
STEPS = (
    "preflight",
    "canaries",
    "block",
    "failover",
    "stop",
    "act",
    "configure",
    "start",
    "health",
    "unblock",
    "routers",
    "warmup",
    "done",
)
# Steps that do not belong to one host's maintenance.
RUN_STEPS = ("plan", "skip", "failed", "finished")


def append(path: str, entry: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a") as stream:
        stream.write(json.dumps(entry, sort_keys=True) + "\n")


def load(path: str) -> list:
    try:
        with open(path) as stream:
            return [json.loads(line) for line in stream if line.strip()]
    except FileNotFoundError:
        return []


def unfinished_hosts(entries: list) -> list:
    """Hosts an interrupted run began (blocked, stopped...) and did not finish."""
    begun, finished = [], set()
    for entry in entries:
        if entry["step"] in STEPS[2:-1] and entry["host"] not in begun:
            begun.append(entry["host"])
        if entry["step"] in ("done", "skip"):
            finished.add(entry["host"])
    return [host for host in begun if host not in finished]


def host_durations(entries: list) -> dict:
    """Seconds from each host's first step to its `done`, for hosts that finished."""
    first, done = {}, {}
    for entry in entries:
        host = entry.get("host")
        if entry["step"] in STEPS:
            first.setdefault(host, entry["t"])
        if entry["step"] == "done":
            done[host] = entry["t"]
    return {host: done[host] - first[host] for host in done}


def progress_line(entries: list, host: str, step: str, detail: str, remaining_hosts: int, now: float) -> str:
    """`+12.3s mc2001 [3/13 block] detail (ETA 12:45:10Z)`; ETA once a host has finished."""
    start = entries[0]["t"] if entries else now
    line = (
        f"+{now - start:.1f}s {host} [{STEPS.index(step) + 1}/{len(STEPS)} {step}]"
        if step in STEPS
        else (f"+{now - start:.1f}s {host} [{step}]")
    )
    if detail:
        line += f" {detail}"
    durations = host_durations(entries)
    if durations and remaining_hosts >= 0:
        per_host = sum(durations.values()) / len(durations)
        finish = now + per_host * remaining_hosts
        line += f" (ETA {time.strftime('%H:%M:%SZ', time.gmtime(finish))}, {per_host:.0f}s per host)"
    return line
