"""What a memcached server and a router say about their health, as plain data.

Used by preflight (drift, pending restarts, router health, gutter room) and by the
rolling maintenance's gates (version, settings, round trip, router re-admission).

`stats settings` names (memcached's doc/protocol.txt, "Settings statistics") are the
common language: the config file's options and the role's variables are both turned
into them, so expected and running values compare one to one.
"""

from __future__ import annotations

import os
import shlex
import time

from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import MemcacheClient

# memcached options (as Debian's /etc/memcached.conf has them, one per line) and the
# `stats settings` field each sets, with how to turn the option's value into the field's.
_MB = 1024 * 1024
OPTION_SETTINGS = {
    "-p": ("tcpport", int),
    "-U": ("udpport", int),
    "-m": ("maxbytes", lambda value: int(value) * _MB),
    "-c": ("maxconns", int),
    "-t": ("num_threads", int),
    "-f": ("growth_factor", float),
    "-n": ("chunk_size", int),
    # The restartable cache's memory file (memcached_restart_file); "(null)" when there is none.
    "-e": ("memory_file", str),
}
# -o options whose presence turns a yes/no setting on (no_<name> turns it off).
EXTENDED_SWITCHES = {
    "lru_maintainer": "lru_maintainer_thread",
    "lru_crawler": "lru_crawler",
    "slab_reassign": "slab_reassign",
}
# Counters read for gates and capacity (from plain `stats`).
COUNTERS = ("bytes", "limit_maxbytes", "curr_items", "get_hits", "get_misses", "evictions", "uptime")


def debian_release(path="/etc/os-release"):
    """The host's Debian release: VERSION_CODENAME of os-release(5), '' when unknown."""
    try:
        with open(path) as stream:
            for line in stream:
                name, _equals, value = line.strip().partition("=")
                if name == "VERSION_CODENAME":
                    return value.strip('"')
    except OSError:
        pass
    return ""


def process_started_at(pid: int, proc: str = "/proc") -> float | None:
    """When a process started (epoch seconds, to the clock tick), None when unknown.

    memcached's own `uptime` starts about 2 s ahead of the process and is whole seconds, so a
    config written just before the start would read as newer than the process. The kernel's
    start time is exact: field 22 of /proc/PID/stat, clock ticks since boot (proc(5)), on the
    clock CLOCK_BOOTTIME reads. (`btime` of /proc/stat is whole seconds: it would put the start
    up to a second early.)
    """
    try:
        with open(f"{proc}/{pid}/stat") as stream:
            # The command name (field 2) may hold spaces: count the fields after its closing ')'.
            after_name = stream.read().rsplit(")", 1)[1].split()
        started_since_boot = int(after_name[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - started_since_boot)


def modified_after_start(path: str, pid: int) -> bool | None:
    """Whether a file changed after the process started, None when the start is unknown.

    The start is read in whole clock ticks, truncated: a tick's allowance keeps a file written
    just before the start from reading as newer.
    """
    started_at = process_started_at(pid)
    if started_at is None:
        return None
    return os.path.getmtime(path) > started_at + 1 / os.sysconf("SC_CLK_TCK")


class HealthError(Exception):
    """A server that cannot be asked, or an answer that cannot be read."""


def item_size_bytes(text: str) -> int:
    """`-I` takes 1m, 1024k or bytes."""
    text = text.strip().lower()
    factor = {"k": 1024, "m": _MB}.get(text[-1:], 1)
    return int(text[:-1] if factor != 1 else text) * factor


def settings_from_config(text: str) -> dict:
    """The `stats settings` values a memcached started with this config file would show."""
    settings: dict = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        option, value = words[0], " ".join(words[1:])
        if option in OPTION_SETTINGS:
            name, convert = OPTION_SETTINGS[option]
            settings[name] = convert(value)
        elif option == "-I":
            settings["item_size_max"] = item_size_bytes(value)
        elif option == "-o":
            for extended in value.split(","):
                name, _equals, setting = extended.partition("=")
                switch = name[3:] if name.startswith("no_") else name
                if switch in EXTENDED_SWITCHES:
                    settings[EXTENDED_SWITCHES[switch]] = not name.startswith("no_")
                elif name == "slab_automove" and setting:
                    settings["slab_automove"] = int(setting)
    return settings


def normalise(name: str, value):
    """A `stats settings` value as the comparable Python value (yes/on -> True, numbers)."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, bool):
        return int(value) if name == "slab_automove" else value
    if isinstance(value, str):
        if value in ("yes", "on"):
            return True
        if value in ("no", "off"):
            return False
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


def drift(expected: dict, running: dict) -> list:
    """Settings whose running value differs from the expected one, sorted by name."""
    found = []
    for name in sorted(expected):
        want = normalise(name, expected[name])
        have = normalise(name, running.get(name))
        if isinstance(want, float) or isinstance(have, float):
            same = have is not None and abs(float(want) - float(have)) < 1e-6
        else:
            same = want == have
        if not same:
            found.append({"setting": name, "expected": want, "actual": have})
    return found


def read_server(address: str, port: int, timeout_s: float = 2.0) -> dict:
    """Version, `stats settings` and the counters of one memcached."""
    try:
        with MemcacheClient(address, port, timeout_s=timeout_s) as client:
            version = client.version()
            settings = {name: normalise(name, value) for name, value in client.stats("settings").items()}
            stats = client.stats()
    except Exception as error:
        raise HealthError(f"memcached at {address}:{port} did not answer: {error}") from None
    counters = {name: normalise(name, stats.get(name)) for name in COUNTERS}
    return {"version": version, "settings": settings, "counters": counters}


def round_trip(address: str, port: int, key: str, timeout_s: float = 2.0) -> bool:
    """Set a short-lived key and read it back: the server stores and serves."""
    value = f"mcfleet-health-{key}"
    try:
        with MemcacheClient(address, port, timeout_s=timeout_s) as client:
            stored = client.set(key, value, exptime=30)
            return bool(stored) and client.get(key) == value.encode()
    except Exception:
        return False


def hit_ratio(counters: dict) -> float | None:
    hits, misses = counters.get("get_hits") or 0, counters.get("get_misses") or 0
    return None if hits + misses == 0 else hits / (hits + misses)


def parse_suspect_servers(stats: dict, backends: list) -> list:
    """mcrouter's `stats suspect_servers` ("ADDRESS:PORT" -> "status:tko num_failures:N")."""
    by_endpoint = {f"{b['address']}:{b['port']}": b["host"] for b in backends}
    bad = []
    for endpoint, status in stats.items():
        status = status.decode() if isinstance(status, bytes) else str(status)
        bad.append(
            {
                "host": by_endpoint.get(endpoint, endpoint),
                "endpoint": endpoint,
                "known": endpoint in by_endpoint,
                "status": status,
            }
        )
    return sorted(bad, key=lambda entry: entry["host"])


def parse_proxybe(stats: dict, backends: list) -> list:
    """memcached proxy's `stats proxybe`: only bad backends, as `bad_<label> <count>`."""
    known = {b["host"] for b in backends}
    bad = []
    for name, count in stats.items():
        label = name.decode() if isinstance(name, bytes) else str(name)
        if label.startswith("bad_"):
            label = label[4:]
        bad.append(
            {"host": label, "known": label in known, "status": f"marked bad ({normalise(label, count)})"}
        )
    return sorted(bad, key=lambda entry: entry["host"])


def read_router(engine: str, address: str, port: int, backends: list, timeout_s: float = 2.0) -> dict:
    """Which of `backends` the router currently holds as bad (TKO / marked bad)."""
    try:
        with MemcacheClient(address, port, timeout_s=timeout_s) as client:
            if engine == "mcrouter":
                bad = parse_suspect_servers(client.stats("suspect_servers"), backends)
                counters = {}
            else:
                bad = parse_proxybe(client.stats("proxybe"), backends)
                stats = client.stats()
                counters = {
                    name: normalise(name, stats.get(name))
                    for name in ("proxy_backend_total", "proxy_backend_marked_bad", "proxy_backend_failed")
                }
    except Exception as error:
        raise HealthError(f"router at {address}:{port} did not answer: {error}") from None
    return {"bad": bad, "counters": counters}
