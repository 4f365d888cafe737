"""Which shards a failover drill blocks, and every reason to refuse it, before anything is blocked.

Plain Python over the topology model, so each refusal is tested without Ansible; the
filter `mcfleet_drill_plan` hands it to playbooks/failover_drill.yml.
"""

from __future__ import annotations

from ansible_collections.mcfleet.fleet.plugins.module_utils.client_placement import place_client

MODES = ("reject", "drop")
REJOIN_POLICIES = ("flush", "keep")
MAX_ROLLBACK_S = 86400
# A shard drill's knobs (-e drill_<name>): default, smallest and largest value accepted.
KNOBS = {
    "baseline_s": (3, 0, 3600),
    "hold_s": (5, 1, 3600),
    "traffic_rate": (200, 1, 5000),
    "traffic_max_s": (600, 1, MAX_ROLLBACK_S),
}
# A proxy drill's: seconds of the writer's local traffic per phase, replicated writes per phase.
PROXY_KNOBS = {
    "proxy_traffic_s": (10, 1, 3600),
    "replicated_count": (100, 1, 100000),
}


def plan_drill(
    model,
    inventory_hosts,
    shard="",
    datacentre="",
    mode="reject",
    policy="keep",
    rollback_s="300",
    lab_subnet=None,
    client_router=None,
    **knobs,
):
    """Return {"datacentre", "targets", "rollback_s", "knobs", "client", "problems"}; no targets
    when refused.

    `client` is where traffic and the verifier run (module_utils/client_placement.py); `knobs`
    are the timing knobs of KNOBS, given as keyword arguments (None or "" for the default).
    """
    shard, datacentre = str(shard or ""), str(datacentre or "")
    mode, policy, rollback = str(mode), str(policy), str(rollback_s)
    datacentres_with_shards = [name for name, dc in model["datacentres"].items() if dc["main"]]
    entry = model["hosts"].get(shard, {}) if shard not in ("", "all") else {}
    problems = []

    if not shard and not datacentre:
        problems.append("drill_shard: set drill_shard=HOST, drill_shard=all or drill_datacentre=DC")
    if shard not in ("", "all") and shard not in inventory_hosts:
        problems.append(f"drill_shard={shard}: no such host in this inventory")
    elif shard not in ("", "all") and entry.get("pool") != "main":
        where = f"its pool is {entry['pool']}" if entry else "not a memcached server"
        problems.append(
            f"drill_shard={shard}: not a main memcached shard ({where}); a drill blocks a main shard only"
        )
    if datacentre and datacentre not in datacentres_with_shards:
        problems.append(f"drill_datacentre={datacentre}: not one of {', '.join(datacentres_with_shards)}")
    if datacentre and entry and entry.get("datacentre") != datacentre:
        problems.append(f"drill_datacentre={datacentre}: drill_shard={shard} is in {entry.get('datacentre')}")

    # The datacentre drilled: the named shard's, or the one asked for, or the only one.
    chosen = entry.get("datacentre") or datacentre
    if not chosen and len(datacentres_with_shards) == 1:
        chosen = datacentres_with_shards[0]
    if shard == "all" and not chosen:
        problems.append(
            f"drill_shard=all: this inventory has datacentres {', '.join(datacentres_with_shards)}; "
            "name one with drill_datacentre=DC"
        )
    if mode not in MODES:
        problems.append(f"drill_mode={mode}: not one of {', '.join(MODES)}")
    if policy not in REJOIN_POLICIES:
        problems.append(f"rejoin_policy={policy}: not one of {', '.join(REJOIN_POLICIES)}")
    problems.extend(_rollback_problems(rollback))
    values, knob_problems = _knobs(knobs, KNOBS)
    problems.extend(knob_problems)
    if values["traffic_max_s"] < values["baseline_s"] + values["hold_s"]:
        problems.append(
            f"drill_traffic_max_s={values['traffic_max_s']}: shorter than the baseline and the hold"
            f" ({values['baseline_s'] + values['hold_s']} s); the traffic must outlast the drill"
        )
    dc = model["datacentres"].get(chosen)
    client = None
    if chosen in datacentres_with_shards and not (dc["routers"] and dc["gutter"]):
        problems.append(f"datacentre {chosen}: no router or no gutter server to drill against")
    elif chosen in datacentres_with_shards:
        client = place_client(model, chosen, lab_subnet, client_router)
        problems.extend(client.pop("problems"))
        if client.get("on_router_host") and policy == "flush":
            # The block cuts the app server off from the shard, so it cannot flush it.
            problems.append(
                f"rejoin_policy=flush: the drill's client runs on {client['host']}, which the block cuts"
                " off from the shard it would flush; use rejoin_policy=keep"
            )

    every_shard = [server["host"] for server in dc["main"]] if dc else []
    targets = [shard] if shard not in ("", "all") else every_shard
    return {
        "datacentre": chosen,
        "targets": [] if problems else targets,
        "rollback_s": int(rollback) if rollback.isdigit() else None,
        "knobs": values,
        "client": client if not problems else None,
        "problems": problems,
    }


def _knobs(given, spec):
    """The knobs of `spec` with their defaults (None or "" given), and a problem naming each bad one."""
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise TypeError(f"unknown drill knobs: {', '.join(unknown)}")
    values, problems = {}, []
    for name, (default, smallest, largest) in spec.items():
        raw = given.get(name)
        text = str(default if raw in (None, "") else raw).strip()
        if not text.isdigit() or not smallest <= int(text) <= largest:
            problems.append(f"drill_{name}={raw}: must be a whole number from {smallest} to {largest}")
            text = str(default)
        values[name] = int(text)
    return values, problems


def _rollback_problems(rollback):
    """The on-host rollback timer every drill arms must be in range."""
    if rollback.isdigit() and 1 <= int(rollback) <= MAX_ROLLBACK_S:
        return []
    return [f"drill_rollback_s={rollback}: must be a whole number of seconds from 1 to {MAX_ROLLBACK_S}"]


def _safety_problems(rollback, lab_subnet):
    """A proxy drill's client runs on the controller only: a rollback timer in range, and a
    lab subnet to confine its traffic to."""
    problems = _rollback_problems(rollback)
    if not lab_subnet:
        problems.append(
            "lab_subnet: not set; a proxy drill sends its client traffic from the controller, only to"
            " a lab subnet or loopback"
        )
    return problems


def describe_targets(model, targets):
    """One line per shard, in drill order, for the plan printed under --check."""
    lines = []
    for number, shard in enumerate(targets, 1):
        host = model["hosts"][shard]
        dc = model["datacentres"][host["datacentre"]]
        router = dc["routers"][0] if dc["routers"] else None
        sources = list(
            dict.fromkeys(
                entry["address"]
                for pool in ("routers", "proxies_primary", "proxies_secondary")
                for entry in dc[pool]
            )
        )
        through = f"{router['host']} {router['address']}:{router['port']}" if router else "no router"
        lines.append(
            f"{number}. {shard} ({host['datacentre']}, port {host['port']}): traffic through {through}; "
            f"blocked for {', '.join(sources) or 'nobody'}"
        )
    return lines


PROXY_POOLS = ("proxies_primary", "proxies_secondary")
EVERY_PROXY = "all-proxies"


def plan_proxy_drill(
    model, inventory_hosts, target="", datacentre="", rollback_s="300", lab_subnet=None, **knobs
):
    """Return the proxy drill's plan: {"datacentre", "targets", "sources", "writer", "rollback_s",
    "knobs", "problems"}; targets is empty when refused. `knobs` are those of PROXY_KNOBS.

    `target` is a proxy host (its cross-datacentre port is blocked), or "all-proxies" with
    `datacentre` (every proxy of that datacentre). The block is for the routers and proxies
    of the other datacentres (the ones that reach these proxies); `writer` is the router of
    another datacentre whose replicated writes and local traffic the drill measures.
    """
    target, datacentre, rollback = str(target or ""), str(datacentre or ""), str(rollback_s)
    problems = []
    entry = model["hosts"].get(target) if target != EVERY_PROXY else None
    if target == EVERY_PROXY:
        if datacentre not in model["datacentres"]:
            problems.append(
                f"drill_datacentre={datacentre or '(not set)'}: drill_target={EVERY_PROXY} needs a "
                f"datacentre of this inventory ({', '.join(model['datacentres'])})"
            )
    elif target not in inventory_hosts:
        problems.append(f"drill_target={target}: no such host in this inventory")
    elif entry is None or entry["pool"] not in ("proxy_primary", "proxy_secondary"):
        where = f"its pool is {entry['pool']}" if entry else "not in the topology model"
        problems.append(f"drill_target={target}: not a cross-datacentre proxy ({where})")
    elif datacentre and datacentre != entry["datacentre"]:
        problems.append(f"drill_datacentre={datacentre}: drill_target={target} is in {entry['datacentre']}")
    chosen = entry["datacentre"] if entry else datacentre
    dc = model["datacentres"].get(chosen)
    targets = []
    if dc and not problems:
        every = [proxy["host"] for pool in PROXY_POOLS for proxy in dc[pool]]
        targets = every if target == EVERY_PROXY else [target]
        if not targets:
            problems.append(f"drill_datacentre={chosen}: has no proxies (proxies_primary, proxies_secondary)")
        if target != EVERY_PROXY and entry["pool"] == "proxy_primary" and not dc["proxies_secondary"]:
            problems.append(
                f"drill_target={target}: datacentre {chosen} has no proxies_secondary to fail over to"
            )
    others = [name for name in model["datacentres"] if name != chosen and model["datacentres"][name]["local"]]
    writers = [router for name in others for router in model["datacentres"][name]["routers"]]
    if dc and not problems and not writers:
        problems.append(
            f"drill_target={target}: no router in another datacentre writes through {chosen}'s proxies"
        )
    problems.extend(_safety_problems(rollback, lab_subnet))
    values, knob_problems = _knobs(knobs, PROXY_KNOBS)
    problems.extend(knob_problems)
    sources = [
        entry["address"]
        for name in others
        for pool in ("routers", *PROXY_POOLS)
        for entry in model["datacentres"][name][pool]
    ]
    return {
        "datacentre": chosen,
        "targets": [] if problems else targets,
        "sources": list(dict.fromkeys(sources)),
        "writer": writers[0]["host"] if writers else None,
        "rollback_s": int(rollback) if rollback.isdigit() else None,
        "knobs": values,
        "problems": problems,
    }
