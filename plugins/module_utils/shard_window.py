"""One memcached server's window out of service, described once for drills and maintenance.

playbooks/tasks/shard_window.yml takes every server of a drill or a maintenance through the
same steps (gutter and routers healthy -> canaries -> timer and block -> failover confirmed
-> act -> health gate -> unblock -> routers re-admit -> client errors at baseline -> warm-up
-> record). What differs is the act, and this description: who is blocked, in which chain,
for how long, which routers are asked, how often, and what the act needs. It is plain Python
over the topology model so each rule is tested without Ansible, and no block source, chain or
retry count is written in YAML.
"""

from __future__ import annotations

import math

from ansible_collections.mcfleet.fleet.plugins.module_utils.render_memcached_proxy import JOURNAL_PATH
from ansible_collections.mcfleet.fleet.plugins.module_utils.shard_block import (
    DEFAULT_STATE_DIR,
    REJOIN_PENDING,
    DrillPaths,
)

# The act between "failover confirmed" and "health gate", and whose window it is.
DRILL_ACTS = ("hold", "flush")
MAINTENANCE_ACTS = ("restart", "in_place", "reimage")
ACTS = DRILL_ACTS + MAINTENANCE_ACTS
MODES = ("reject", "drop")
CHAINS = {"drill": "MCFLEET-DRILL", "maintenance": "MCFLEET-MAINT"}
MAX_ROLLBACK_S = 86400
# A failover the routers have not made within this long is a failed drill or a stopped run.
FAILOVER_TIMEOUT_S = 60


class WindowError(ValueError):
    """A field of the window is wrong; the message names the field and the value."""


def _whole(field, value, low, high):
    text = str(value).strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise WindowError(f"{field}={value}: must be a whole number from {low} to {high}")
    return int(text)


def _fraction(field, value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not 0.0 <= number <= 1.0:
        raise WindowError(f"{field}={value}: must be a number from 0 to 1")
    return number


def canary_retries(model):
    """Tries 2 s apart while a recently blocked shard may still be out of a router's pool."""
    return math.ceil(model["tko"]["probe_timeout_max_ms"] / 2000) + 3


def readmit_retries(model):
    """Tries 1 s apart for every router to re-admit a server: a long outage backs the
    memcached proxy's retries off towards the longest probe delay, and it re-admits on the
    first request after that delay."""
    return math.ceil(model["tko"]["probe_timeout_max_ms"] / 1000 * 3) + 30


def routers_to_ask(model, dc):
    """The datacentre's routers and proxies, each with how its health is read: the memcached
    proxy on its own address, mcrouter on loopback (its admin port is not exposed)."""
    asked = []
    for entry in dc["routers"] + dc["proxies_primary"] + dc["proxies_secondary"]:
        router = model["routers"][entry["host"]]
        local = router["engine"] != "memcached_proxy"
        asked.append(
            {
                "host": entry["host"],
                "engine": router["engine"],
                "address": "127.0.0.1" if local else entry["address"],
                "port": router["port"],
            }
        )
    return asked


def describe_window(
    model,
    host,
    act,
    rollback_s,
    mode="reject",
    hold_s=0,
    flush_conntrack=False,
    gate_min_requests=20,
    warmup_s=0,
    warmup_hit_ratio=0,
    warmup_max_s=300,
    target_release=None,
    warm_restart=False,
):
    """The window of `host` for `act`; raises WindowError naming the field and value.

    `warm_restart`: memcached could keep its cache across this restart (the memcached role's
    warm_restart_check); the window then starts it warm if every router journals its failovers.
    """
    entry = model["hosts"].get(host)
    if entry is None or entry.get("pool") not in ("main", "gutter"):
        raise WindowError(f"host={host}: not a memcached server of the topology")
    if act not in ACTS:
        raise WindowError(f"act={act}: not one of {', '.join(ACTS)}")
    kind = "drill" if act in DRILL_ACTS else "maintenance"
    if kind == "drill" and entry["pool"] != "main":
        raise WindowError(f"host={host}: a drill blocks a main shard only (its pool is {entry['pool']})")
    if mode not in MODES:
        raise WindowError(f"mode={mode}: not one of {', '.join(MODES)}")
    if kind == "maintenance" and mode != "reject":
        # A dropped port holds each client until its timeout: no maintenance needs that.
        raise WindowError(f"mode={mode}: a maintenance rejects; drop is for drills")
    dc = model["datacentres"][entry["datacentre"]]
    is_gutter = entry["pool"] == "gutter"
    blocked_for = dc["routers"] + dc["proxies_primary"] + dc["proxies_secondary"]
    routers = routers_to_ask(model, dc)
    # Only the memcached proxy journals what it sends to the gutter (routes.lua); with an
    # mcrouter in the datacentre a shard cannot come back holding data safely.
    unjournalled = sorted(r["host"] for r in routers if r["engine"] != "memcached_proxy")
    warm, why = _warm_verdict(act, warm_restart, is_gutter, unjournalled)
    return {
        "host": host,
        "datacentre": entry["datacentre"],
        "address": entry["address"],
        "port": entry["port"],
        "is_gutter": is_gutter,
        "act": act,
        "kind": kind,
        # Only a maintenance stops, configures and starts memcached.
        "service_act": kind == "maintenance",
        "chain": CHAINS[kind],
        "mode": mode,
        "flush_conntrack": bool(flush_conntrack),
        "rollback_s": _whole("rollback_s", rollback_s, 1, MAX_ROLLBACK_S),
        # The host's timer brings memcached back only where the window stops it.
        "restore_memcached": kind == "maintenance",
        # An in-place upgrade reboots with memcached masked: a unit of the next boot arms the
        # timer again, in case the controller died during the reboot.
        "survive_reboot": act == "in_place",
        # What the timer runs: a stopped window runs it at once, also one a killed run armed.
        "rollback_script": DrillPaths(DEFAULT_STATE_DIR, CHAINS[kind]).script,
        # The clients the block cuts off: the datacentre's routers and cross-DC proxies.
        "sources": sorted({server["address"] for server in blocked_for}),
        "routers": routers,
        "backends": dc["main"] + dc["gutter"],
        # Servers that must answer before this one goes out: the gutter, and for a gutter
        # server every main shard too (it carries no keys of its own).
        "must_answer": [s for s in (dc["main"] if is_gutter else []) + dc["gutter"] if s["host"] != host],
        "verify": {"route_prefix": dc["route_prefix"], "shards": dc["main"], "gutter": dc["gutter"]},
        # A flush drill flushes the shard while it is cut off, so it rejoins with nothing stale.
        "rejoin_policy": "flush" if act == "flush" else "keep",
        # Before a main shard rejoins, what the routers journalled while it was out is copied
        # from the gutter or deleted on it (plugins/module_utils/rejoin.py): a shard that comes
        # back holding data (a hold drill, a warm restart) serves nothing stale, and one that
        # comes back cold gets the hottest keys of its window. A flush drill rejoins empty.
        "warm": warm,
        "warm_why": why,
        "rejoin_replay": not unjournalled and not is_gutter and act != "flush",
        "journal_path": JOURNAL_PATH,
        # Left on the host until the shard is consistent: its rollback empties it instead.
        "rejoin_pending": REJOIN_PENDING,
        "canaries": not is_gutter,
        "canary_retries": canary_retries(model),
        "readmit_retries": readmit_retries(model),
        "failover_timeout_s": FAILOVER_TIMEOUT_S,
        # A drill judges violations in its report; a maintenance stops at the first.
        "fail_on_violation": kind == "maintenance",
        # An upgrade's health gate requires the host to run this release.
        "target_release": target_release or None,
        "hold_s": _whole("hold_s", hold_s, 0, MAX_ROLLBACK_S),
        "gate_min_requests": _whole("gate_min_requests", gate_min_requests, 1, 10**6),
        "warmup_s": _whole("warmup_s", warmup_s, 0, MAX_ROLLBACK_S),
        "warmup_hit_ratio": _fraction("warmup_hit_ratio", warmup_hit_ratio),
        "warmup_max_s": _whole("warmup_max_s", warmup_max_s, 0, MAX_ROLLBACK_S),
    }


def _warm_verdict(act, warm_restart, is_gutter, unjournalled):
    """(warm, why): whether this window restarts memcached warm, in words for the plan."""
    if act not in ("restart", "in_place"):
        return False, f"act {act} does not keep the cache"
    if not warm_restart:
        return False, "memcached cannot keep its cache across this restart"
    if is_gutter:
        # The gutter's keys live for its TTL only: nothing worth keeping, nothing to invalidate.
        return False, "a gutter server restarts cold"
    if unjournalled:
        return False, f"routers that journal no failovers (mcrouter): {', '.join(unjournalled)}"
    if act == "in_place":
        # The tmpfs does not outlive the reboot (mcfleet.fleet.restart_file_carry). memcached
        # 1.6.38 takes 1.6.18's file (lab/restart_file_across_releases.sh); one that refuses a
        # file starts empty, and the report's items after the start say so.
        return True, (
            "warm: the memory file is carried to disk across the reboot (cold if the disk lacks room), "
            "the routers' journals replayed before the unblock"
        )
    return True, "warm: the memory file is kept, the routers' journals replayed before the unblock"
