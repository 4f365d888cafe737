"""The rolling maintenance's progress log: one JSON line per host and step, on the controller.

It is what the operator sees (one line per shard and step, elapsed time, an estimated
finish once a first host is done), what the report is built from, and the journal a resumed
run reads: a host is done when its own `done` line says so, nothing else.

Crash-safe as an append log: each line is written whole and fsynced before the step it
records goes on, and a line torn by a crash (the last one) is skipped when read, and closed
before the next append so it never swallows the next entry.
"""

from __future__ import annotations

import json
import os
import time

from ansible_collections.mcfleet.fleet.plugins.module_utils.safe_files import safe_directory

# The per-host steps, in order (playbooks/tasks/shard_window.yml).
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
    "invalidate",
    "unblock",
    "routers",
    "catch_up",
    "warmup",
    "done",
)
# Steps that do not belong to one host's maintenance.
RUN_STEPS = ("plan", "skip", "failed", "finished")


def append(path: str, entry: dict) -> None:
    safe_directory(os.path.dirname(os.path.abspath(path)))
    line = json.dumps(entry, sort_keys=True) + "\n"
    # O_NOFOLLOW: a symlink planted at the path is refused (ELOOP), not appended through.
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(path, flags, 0o644), "a+b") as stream:
        # A line torn by a crash has no newline: end it, so this entry starts a line of its own.
        stream.seek(0, os.SEEK_END)
        if stream.tell() > 0:
            stream.seek(-1, os.SEEK_END)
            if stream.read(1) != b"\n":
                line = "\n" + line
        stream.write(line.encode())
        stream.flush()
        os.fsync(stream.fileno())


def load(path: str) -> list:
    """Every whole entry; a torn or unreadable line is skipped, not fatal."""
    entries = []
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            for line in stream:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and "step" in entry:
                    entries.append(entry)
    except FileNotFoundError:
        pass
    return entries


def done_hosts(entries: list) -> list:
    """Hosts whose journal says `done` (or skipped as done), in the order they finished."""
    done = []
    for entry in entries:
        if entry["step"] in ("done", "skip") and entry.get("host") not in done:
            done.append(entry.get("host"))
    return done


def unfinished_hosts(entries: list) -> list:
    """Hosts an interrupted run began (blocked, stopped...) and did not finish."""
    begun = []
    for entry in entries:
        if entry["step"] in STEPS[2:-1] and entry["host"] not in begun:
            begun.append(entry["host"])
    finished = set(done_hosts(entries))
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
