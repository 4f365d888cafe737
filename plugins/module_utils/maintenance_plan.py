"""What a rolling maintenance does, in which order, and every reason to refuse it.

Plain Python over the topology model, so each refusal is tested without Ansible; the
filter `mcfleet.fleet.maintenance_plan` hands it to playbooks/rolling_maintenance.yml.
Nothing here touches a host: the play stops on the first problem, before any change.

The order follows Wikimedia's memcached cookbook (sre/memcached/roll-reboot-restart.py in
wikimedia/operations-cookbooks): one datacentre per run, main shards in batches (1 by
default, at most 4), and the gutter servers after them, one at a time, never together
with a main shard.
"""

from __future__ import annotations

import re

from ansible_collections.mcfleet.fleet.plugins.module_utils import route_explain
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import MAX_DURATION_S, MAX_REQUESTS

ACTIONS = ("restart", "upgrade")
METHODS = ("in_place", "reimage")
# Debian releases the memcached role supports, oldest first.
RELEASES = ("buster", "bullseye", "bookworm", "trixie")
MAX_BATCH = 4
PLACEHOLDERS = ("{host}", "{address}", "{release}")
# Debian's major version of each release: the memcached role's vars/Debian_<major>.yml.
RELEASE_MAJOR = {"buster": "10", "bullseye": "11", "bookworm": "12", "trixie": "13"}
# The shard_block module's bound on its rollback timer.
MAX_ROLLBACK_S = 86400
# A host's window, when nothing else bounds it: block to done, warm-up included.
HOST_WINDOW_S = 900
# The shortest rollback an upgrade may have. Its act (a full upgrade and a reboot, or a
# reimage) keeps the shard out for minutes; a timer that fired inside it would start memcached
# while the controller still works on the host. The rollback is the whole window's deadline,
# counted from the first block (a re-block after the reboot keeps it).
MIN_UPGRADE_ROLLBACK_S = 180
# The datacentre's lock outlives a host's rollback timer by this much, so a run that lost its
# controller keeps others out until its host has restored itself, and no longer.
LOCK_MARGIN_S = 60


def lock_host(model, datacentre):
    """Where a datacentre's maintenance and drill lock is held: its first router (app server),
    which no memcached maintenance restarts; a gutter server where it has none."""
    dc = model["datacentres"].get(datacentre) or {}
    hosts = [entry["host"] for entry in (dc.get("routers") or []) + (dc.get("gutter") or [])]
    return hosts[0] if hosts else None


def window_knobs(rollback_s=900, gate_min_requests=20, traffic_rate=100, traffic_max_s=None, hosts=1):
    """The window's knobs, validated once: (values, problems naming each -e field and value)."""
    problems = []
    rollback = _whole_number(rollback_s)
    if rollback is None or not 1 <= rollback <= MAX_ROLLBACK_S:
        problems.append(
            f"maintenance_rollback_s={rollback_s}: must be a whole number of seconds from 1 to "
            f"{MAX_ROLLBACK_S} (the host's own timer restores it after that long if no controller does)"
        )
        rollback = 900
    min_requests = _whole_number(gate_min_requests)
    if min_requests is None or min_requests < 1:
        problems.append(
            f"maintenance_gate_min_requests={gate_min_requests}: must be a whole number from 1 "
            "(the client-error gate never passes on an empty window)"
        )
    rate = _whole_number(traffic_rate)
    if rate is None or rate < 1:
        problems.append(
            f"maintenance_traffic_rate={traffic_rate}: must be a whole number of requests per second from 1"
        )
        rate = 100
    # The traffic lasts as long as the run: each host's window, and the run's own steps.
    max_s = _whole_number(traffic_max_s) if traffic_max_s not in (None, "") else hosts * HOST_WINDOW_S + 600
    if max_s is None or not 60 <= max_s <= MAX_DURATION_S:
        problems.append(
            f"maintenance_traffic_max_s={traffic_max_s}: must be a whole number of seconds "
            f"from 60 to {MAX_DURATION_S}"
        )
        max_s = 3600
    elif rate * max_s > MAX_REQUESTS:
        problems.append(
            f"maintenance_traffic_rate={rate} for maintenance_traffic_max_s={max_s}: more than the traffic's "
            f"{MAX_REQUESTS} requests; lower the rate, or the traffic would end before the run"
        )
    knobs = {
        "rollback_s": rollback,
        "lock_ttl_s": rollback + LOCK_MARGIN_S,
        "gate_min_requests": min_requests,
        "traffic_rate": rate,
        "traffic_max_s": max_s,
    }
    return knobs, problems


def _whole_number(value):
    text = str(value).strip()
    return int(text) if re.fullmatch(r"[0-9]+", text) else None


def plan_maintenance(
    model,
    play_hosts,
    reason="",
    action="restart",
    target_release="",
    method="in_place",
    reimage_command="",
    batch_size=1,
    host_releases=None,
    warmup_s=0,
    rollback_s=900,
    gate_min_requests=20,
    traffic_rate=100,
    traffic_max_s=None,
):
    """Return {"datacentre", "main", "gutter", "batches", "batch_size", "problems", ...}.

    `play_hosts` are the hosts the run may touch (the inventory after --limit); they must
    hold the shards of exactly one datacentre. `host_releases` maps a host to the Debian
    release it runs now, where known (for the downgrade check).
    """
    reason, action, method = str(reason or "").strip(), str(action or ""), str(method or "")
    target_release, reimage_command = str(target_release or ""), str(reimage_command or "")
    problems = []
    if not reason:
        problems.append('maintenance_reason: required (-e maintenance_reason="why this maintenance")')
    if action not in ACTIONS:
        problems.append(f"maintenance_action={action}: not one of {', '.join(ACTIONS)}")
    if action == "upgrade":
        if target_release not in RELEASES:
            problems.append(f"target_release={target_release}: not one of {', '.join(RELEASES)}")
        if method not in METHODS:
            problems.append(f"upgrade_method={method}: not one of {', '.join(METHODS)}")
        rollback = _whole_number(rollback_s)
        if rollback is not None and 1 <= rollback < MIN_UPGRADE_ROLLBACK_S:
            problems.append(
                f"maintenance_rollback_s={rollback_s}: an upgrade needs at least {MIN_UPGRADE_ROLLBACK_S} s "
                "(the host's timer would bring memcached back in the middle of the upgrade and reboot)"
            )
        if method == "reimage" and not reimage_command:
            problems.append(
                "reimage_command: required with upgrade_method=reimage "
                f"(a command run on the controller; {', '.join(PLACEHOLDERS)} are filled in)"
            )
    batch = _whole_number(batch_size)
    if batch is None or not 1 <= batch <= MAX_BATCH:
        problems.append(f"batch_size={batch_size}: must be a whole number from 1 to {MAX_BATCH}")
    warmup = _whole_number(warmup_s)
    if warmup is None:
        problems.append(f"warmup_s={warmup_s}: must be a whole number of seconds")

    # One datacentre per run: the one whose memcached servers the play may touch.
    memcached_hosts = {
        host: entry for host, entry in model["hosts"].items() if entry["pool"] in ("main", "gutter")
    }
    in_play = sorted(host for host in play_hosts if host in memcached_hosts)
    datacentres = sorted({memcached_hosts[host]["datacentre"] for host in in_play})
    if not in_play:
        problems.append("--limit: no main shard or gutter server of any datacentre is in this run")
    elif len(datacentres) > 1:
        problems.append(
            f"--limit: this run would touch the memcached servers of {', '.join(datacentres)}; "
            "maintenance runs one datacentre at a time: add --limit DATACENTRE (codfw first, then eqiad)"
        )
    datacentre = datacentres[0] if len(datacentres) == 1 else None
    dc = model["datacentres"].get(datacentre) if datacentre else None
    main = [entry["host"] for entry in dc["main"] if entry["host"] in in_play] if dc else []
    gutter = [entry["host"] for entry in dc["gutter"] if entry["host"] in in_play] if dc else []
    if dc and not dc["gutter"]:
        problems.append(f"datacentre {datacentre}: no gutter server to carry a shard's traffic")
    if dc and not dc["routers"]:
        problems.append(f"datacentre {datacentre}: no router to send the traffic and check failover through")
    if action == "upgrade" and target_release in RELEASES:
        in_run = {host: release for host, release in (host_releases or {}).items() if host in in_play}
        problems += downgrades(target_release, in_run)

    knobs, knob_problems = window_knobs(
        rollback_s, gate_min_requests, traffic_rate, traffic_max_s, len(main + gutter) or 1
    )
    problems += knob_problems
    batches = [main[index : index + batch] for index in range(0, len(main), batch)] if batch else []
    return {
        **knobs,
        "lock_host": lock_host(model, datacentre) if dc else None,
        "target_major": RELEASE_MAJOR.get(target_release, "") if action == "upgrade" else "",
        "datacentre": datacentre,
        "gutter_shares": route_explain.datacentre_gutter_shares(model, datacentre) if dc else None,
        "action": action,
        "target_release": target_release if action == "upgrade" else None,
        "method": method if action == "upgrade" else None,
        # The act of each host's window (module_utils/shard_window.py).
        "act": method if action == "upgrade" else "restart",
        "reason": reason,
        "batch_size": batch,
        "warmup_s": warmup,
        "main": main,
        "gutter": gutter,
        "batches": [] if problems else batches,
        "problems": problems,
    }


def downgrades(target_release, host_releases):
    """A refusal for each host that runs a release newer than the target."""
    target = RELEASES.index(target_release)
    return [
        f"target_release={target_release}: {host} runs {release}, and a downgrade is not supported"
        for host, release in sorted(host_releases.items())
        if release in RELEASES and RELEASES.index(release) > target
    ]


def gutter_room(batch_size, shard_bytes, gutter_counters, gutter_shares=None):
    """Whether the gutter can take what a batch takes out: a refusal, or None.

    `shard_bytes` maps each main shard to its bytes in use; `gutter_counters` maps each
    gutter server to its `limit_maxbytes` and `bytes`. The batch that matters is the
    `batch_size` largest shards. With `gutter_shares` ({shard: {gutter server: fraction of
    the shard's keys it takes}}, route_explain.gutter_shares) each gutter server must hold
    its part of the batch that loads it most; without, the pool's free bytes are pooled.
    """
    if gutter_shares:
        return _gutter_room_per_server(int(batch_size), shard_bytes, gutter_counters, gutter_shares)
    largest = sorted(shard_bytes.values(), reverse=True)[: int(batch_size)]
    needed = sum(largest)
    free = sum(max(0, c["limit_maxbytes"] - c["bytes"]) for c in gutter_counters.values())
    if needed > free:
        return (
            f"batch_size={batch_size}: the {len(largest)} largest shards hold {needed} bytes, "
            f"more than the gutter's {free} free bytes ({', '.join(sorted(gutter_counters))})"
        )
    return None


def _gutter_room_per_server(batch_size, shard_bytes, gutter_counters, gutter_shares):
    short = []
    for server, counters in sorted(gutter_counters.items()):
        free = max(0, counters["limit_maxbytes"] - counters["bytes"])
        loads = sorted(
            (
                (round(size * (gutter_shares.get(shard) or {}).get(server, 0.0)), shard)
                for shard, size in shard_bytes.items()
            ),
            key=lambda item: (-item[0], item[1]),
        )[:batch_size]
        needed = sum(load for load, _shard in loads)
        if needed > free:
            shards = ", ".join(f"{shard} {load}" for load, shard in loads if load)
            short.append(f"{server} would take {needed} bytes ({shards}) and has {free} free")
    if short:
        return (
            f"batch_size={batch_size}: a gutter server cannot hold its part of a batch's keys "
            f"(placed by the routers' hashing): {'; '.join(short)}"
        )
    return None


def live_problems(plan, health):
    """What only the running fleet can refuse, once every server of the run has been read.

    `health` maps each main shard and gutter server of the run to its memcached_health
    result. A gutter server that does not answer, a downgrade, or a gutter pool without
    room for the batch's largest shards stops the run before any change.
    """
    problems = []
    for host in plan["gutter"]:
        if not (health.get(host) or {}).get("running"):
            problems.append(f"gutter server {host} is down: its shards' traffic would have nowhere to go")
    if plan["action"] == "upgrade" and plan["target_release"] in RELEASES:
        releases = {host: (result or {}).get("release") for host, result in health.items()}
        problems += downgrades(plan["target_release"], releases)

    def counters(host):
        return (health.get(host) or {}).get("counters") or {}

    room = gutter_room(
        plan["batch_size"],
        {host: counters(host).get("bytes") or 0 for host in plan["main"]},
        {
            host: {
                "limit_maxbytes": counters(host).get("limit_maxbytes") or 0,
                "bytes": counters(host).get("bytes") or 0,
            }
            for host in plan["gutter"]
        },
        plan.get("gutter_shares"),
    )
    return problems + ([room] if room else [])


def reimage_argv(command, host, address, release):
    """The operator's reimage command with its placeholders filled in, as words."""
    import shlex

    filled = command.replace("{host}", host).replace("{address}", address).replace("{release}", release)
    return shlex.split(filled)
