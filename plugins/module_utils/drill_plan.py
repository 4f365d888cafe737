"""Which shards a failover drill blocks, and every reason to refuse it, before anything is blocked.

Plain Python over the topology model, so each refusal is tested without Ansible; the
filter `mcfleet_drill_plan` hands it to playbooks/failover_drill.yml.
"""

from __future__ import annotations

from ansible_collections.mcfleet.fleet.plugins.module_utils.client_placement import place_client

MODES = ("reject", "drop")
REJOIN_POLICIES = ("flush", "keep")
MAX_ROLLBACK_S = 86400


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
):
    """Return {"datacentre", "targets", "rollback_s", "client", "problems"}; no targets when refused.

    `client` is where traffic and the verifier run (module_utils/client_placement.py).
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
    if not (rollback.isdigit() and 1 <= int(rollback) <= MAX_ROLLBACK_S):
        problems.append(
            f"drill_rollback_s={rollback}: must be a whole number of seconds from 1 to {MAX_ROLLBACK_S}"
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
        "client": client if not problems else None,
        "problems": problems,
    }


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
