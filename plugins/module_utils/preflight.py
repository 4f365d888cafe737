"""Preflight: what every maintenance playbook and drill checks first, as plain data.

playbooks/preflight.yml reads each host once with the preflight_probe action
(netfilter_rules everywhere; memcached_health on shards and gutter servers; router_health
and a stat of the deployed config on routers and proxies) and hands the registered
results to the preflight_report action, which calls `build_checks()` here to turn them
into one row per check and host:

    {"check": "settings", "host": "mc2003", "status": "FAIL", "detail": "...", "data": {...}}

`status` is "ok", "warn" or "FAIL"; any FAIL fails the playbook. `render_table()` prints
the rows, `report()` is the JSON document written under reports/.

Names of memcached settings are those of `stats settings` (memcached's doc/protocol.txt,
"Settings statistics"); router health is mcrouter's `stats suspect_servers` or memcached's
proxy `stats proxybe` (plugins/module_utils/memcached_health.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible_collections.mcfleet.fleet.plugins.module_utils import route_explain
from ansible_collections.mcfleet.fleet.plugins.module_utils.maintenance_plan import gutter_room

OK, WARN, FAIL = "ok", "warn", "FAIL"
STATUSES = (OK, WARN, FAIL)
# Check names in the order a host's rows are printed.
CHECKS = (
    "topology",
    "reachable",
    "release",
    "clock",
    "memcached",
    "settings",
    "restart_pending",
    "router_config",
    "router_backends",
    "certificates",
    "netfilter",
    "gutter_capacity",
)
# Host clocks must agree with the controller's within this many seconds.
CLOCK_TOLERANCE_S = 1.0
_MB = 1024 * 1024
_KB = 1024

# Inventory variable of the memcached role -> (`stats settings` name, conversion).
# The role writes them into /etc/memcached.conf as -m, -c, -t, -f, -n and -I<kb>k
# (roles/memcached/templates/memcached.conf.j2).
ROLE_SETTINGS = {
    "memcached_memory_mb": ("maxbytes", lambda value: int(value) * _MB),
    "memcached_max_connections": ("maxconns", int),
    "memcached_threads": ("num_threads", int),
    "memcached_growth_factor": ("growth_factor", float),
    "memcached_min_slab_size": ("chunk_size", int),
    "memcached_max_item_size_kb": ("item_size_max", lambda value: int(value) * _KB),
}


def expected_settings(variables, defaults, port):
    """`stats settings` values the memcached role configures from these variables.

    `variables` are the host's inventory variables (any subset), `defaults` the role's
    defaults/main.yml; a variable the inventory does not set falls back to its default.
    `port` is the topology model's port of the host (tcpport).
    """
    variables = variables or {}
    settings = {"tcpport": int(port)}
    for name, (setting, convert) in ROLE_SETTINGS.items():
        value = variables.get(name)
        if value is None:
            value = defaults.get(name)
        if value is None:
            continue
        settings[setting] = convert(value)
    return settings


def clock_skew(host_time, sent, received):
    """How far the host's clock is outside the controller's [sent, received] window, in seconds.

    The host read its clock at some moment between the controller sending the request and
    receiving the answer, so any reading inside that window is consistent with agreeing
    clocks: 0. Positive: the host is ahead; negative: behind.
    """
    if host_time < sent:
        return host_time - sent
    if host_time > received:
        return host_time - received
    return 0.0


def clock_check(host_time, sent, received, tolerance_s=CLOCK_TOLERANCE_S):
    """(status, detail, data) of the clock check."""
    round_trip = max(0.0, received - sent)
    skew = clock_skew(host_time, sent, received)
    data = {"host_time": host_time, "sent": sent, "received": received, "round_trip_s": round(round_trip, 3)}
    data["skew_s"] = round(skew, 3)
    if abs(skew) > tolerance_s:
        where = "ahead of" if skew > 0 else "behind"
        return (
            FAIL,
            f"clock {abs(skew):.3f} s {where} the controller (tolerance {tolerance_s:g} s, "
            f"round trip {round_trip:.3f} s)",
            data,
        )
    return OK, f"within {tolerance_s:g} s of the controller (round trip {round_trip:.3f} s)", data


def gutter_capacity(main_bytes, gutter_memory, batch_size=1, gutter_shares=None):
    """Whether the gutter pool has room for the `batch_size` largest main shards.

    `main_bytes`: {shard: bytes in use, or None when unknown}; `gutter_memory`: {gutter
    server: (limit_maxbytes, bytes) or None when unknown}. Free memory of the pool is the
    sum of limit_maxbytes - bytes over the servers that answered. With `gutter_shares`
    (route_explain.gutter_shares), each gutter server must also hold its part of the batch
    that loads it most (maintenance_plan.gutter_room).
    Returns (status, detail, data).
    """
    batch_size = int(batch_size)
    if batch_size < 1:
        return FAIL, f"batch_size={batch_size}: must be 1 or more", {"batch_size": batch_size}
    known = {host: value for host, value in main_bytes.items() if value is not None}
    unknown_main = sorted(host for host, value in main_bytes.items() if value is None)
    largest = sorted(known.items(), key=lambda item: (-item[1], item[0]))[:batch_size]
    need = sum(value for _host, value in largest)
    free_by_host = {
        host: max(0, int(memory[0]) - int(memory[1])) for host, memory in gutter_memory.items() if memory
    }
    unknown_gutter = sorted(host for host, memory in gutter_memory.items() if not memory)
    free = sum(free_by_host.values())
    data = {
        "batch_size": batch_size,
        "need_bytes": need,
        "largest_shards": [{"host": host, "bytes": value} for host, value in largest],
        "free_bytes": free,
        "gutter_free_bytes": free_by_host,
        "unknown_main": unknown_main,
        "unknown_gutter": unknown_gutter,
    }
    sizes = f"gutter free {_human(free)} vs {_human(need)} in use on the {batch_size} largest shard(s)"
    named = ", ".join(host for host, _bytes in largest)
    if named:
        sizes += f" ({named})"
    if not free_by_host:
        return FAIL, f"no gutter server answered: {', '.join(unknown_gutter) or 'none in this run'}", data
    if free < need:
        return FAIL, f"not enough room: {sizes}", data
    if gutter_shares:
        counters = {
            host: {"limit_maxbytes": int(memory[0]), "bytes": int(memory[1])}
            for host, memory in gutter_memory.items()
            if memory
        }
        short = gutter_room(batch_size, known, counters, gutter_shares)
        if short:
            return FAIL, f"not enough room on one gutter server: {short}", data
    if unknown_main or unknown_gutter:
        missing = ", ".join(unknown_main + unknown_gutter)
        return WARN, f"{sizes}; not read: {missing}", data
    return OK, sizes, data


def _human(count):
    if count >= _MB:
        return f"{count / _MB:.1f} MiB"
    if count >= _KB:
        return f"{count / _KB:.1f} KiB"
    return f"{count} B"


def describe_drift(items):
    """'maxbytes: expected 67108864, actual 1048576; ...' for memcached_health's drift items."""
    return "; ".join(
        f"{item['setting']}: expected {item['expected']}, actual {item['actual']}" for item in items
    )


def _row(check, host, status, detail, data=None):
    row = {"check": check, "host": host, "status": status, "detail": detail}
    if data is not None:
        row["data"] = data
    return row


def _one_line(message, limit=200):
    """A connection error's message on one line, its last words kept (they say why)."""
    text = " ".join(str(message or "").split())
    return text if len(text) <= limit else "..." + text[-limit:]


def _usable(result):
    """A registered result that ran (not skipped, not unreachable), or None."""
    if not isinstance(result, Mapping) or result.get("skipped") or result.get("unreachable"):
        return None
    return result


def _host_rows(host, entry, probe, expected_sha1, target_release=None):
    """Rows of the per-host checks for one host of the model."""
    rows = []
    if not probe:
        return [_row("reachable", host, FAIL, "not probed")]
    if probe.get("unreachable"):
        return [_row("reachable", host, FAIL, f"unreachable: {_one_line(probe.get('msg'))}".strip())]
    if probe.get("failed"):
        return [_row("reachable", host, FAIL, f"probe failed: {_one_line(probe.get('msg'))}".strip())]
    ran = {name: _usable(probe.get(name)) for name in ("memcached", "router", "config", "netfilter")}
    rows.append(_row("reachable", host, OK, "answered"))

    # Release and clock come from the health probe of the host (memcached or router).
    health = ran["memcached"] if entry["pool"] in ("main", "gutter") else ran["router"]
    health_ok = health is not None and not health.get("failed")
    if not health_ok:
        why = (health or {}).get("msg", "the health probe did not run")
        rows.append(_row("release", host, FAIL, f"not read: {why}"))
    else:
        running, expected = health.get("release") or "", entry.get("release")
        if expected is None:
            rows.append(_row("release", host, WARN, f"runs {running or '?'}; no mcfleet_release set"))
        elif running == expected:
            rows.append(_row("release", host, OK, f"runs {running}"))
        elif target_release and running == target_release:
            # A rolling upgrade part done: this host is on the release it is being moved to.
            rows.append(
                _row("release", host, OK, f"runs {running}, the upgrade's target (inventory: {expected})")
            )
        else:
            rows.append(_row("release", host, FAIL, f"runs {running or '?'}, expected {expected}"))
        sent, received = health.get("controller_sent"), health.get("controller_received")
        if health.get("time") is None or sent is None or received is None:
            rows.append(_row("clock", host, WARN, "not measured (no host or controller timestamps)"))
        else:
            checked = clock_check(float(health["time"]), float(sent), float(received))
            rows.append(_row("clock", host, *checked))

    if entry["pool"] in ("main", "gutter"):
        rows.extend(_memcached_rows(host, health if health_ok else None, health))
    else:
        rows.append(_router_config_row(host, ran["config"], probe.get("config_path"), expected_sha1))
        rows.append(_router_backends_row(host, health if health_ok else None, health))
    if probe.get("certificates"):
        rows.append(certificates_row(host, probe["certificates"]))
    rows.append(_netfilter_row(host, ran["netfilter"]))
    return rows


def certificates_row(host, slurped, now=None):
    """FAIL when a TLS certificate on the host cannot be read or has under MIN_DAYS_LEFT days left.

    `slurped`: {path: ansible.builtin.slurp's result}. Certificates are parsed here, on the
    controller (plugins/module_utils/tls_material.py needs `cryptography`).
    """
    import base64

    from ansible_collections.mcfleet.fleet.plugins.module_utils import tls_material

    problems, seen = [], []
    for path, result in sorted(slurped.items()):
        if not isinstance(result, Mapping) or result.get("failed") or "content" not in result:
            problems.append(f"{path}: not read: {_one_line((result or {}).get('msg', 'slurp did not run'))}")
            continue
        try:
            certificate = tls_material.load_certificate(base64.b64decode(result["content"]), path)
        except tls_material.TLSMaterialError as error:
            problems.append(str(error))
            continue
        left = tls_material.days_left(certificate, now)
        seen.append(
            {"path": path, "days_left": left, "not_after": certificate.not_valid_after_utc.isoformat()}
        )
        if left < tls_material.MIN_DAYS_LEFT:
            problems.append(
                f"{path} expires {certificate.not_valid_after_utc.date()}: {left} days left, "
                f"under {tls_material.MIN_DAYS_LEFT}; renew it"
            )
    if problems:
        return _row("certificates", host, FAIL, "; ".join(problems), {"certificates": seen})
    described = ", ".join(f"{item['path']} {item['days_left']} days" for item in seen)
    return _row("certificates", host, OK, f"valid for {described}", {"certificates": seen})


def _memcached_rows(host, health, raw):
    if health is None:
        why = (raw or {}).get("msg", "memcached_health did not run")
        return [_row("memcached", host, FAIL, f"not read: {why}")]
    if not health.get("running"):
        return [_row("memcached", host, FAIL, f"not running: {health.get('error', '')}".strip())]
    rows = [_row("memcached", host, OK, f"memcached {health.get('version')} answers")]
    found = health.get("drift") or []
    if found:
        rows.append(_row("settings", host, FAIL, describe_drift(found), {"drift": found}))
    else:
        rows.append(_row("settings", host, OK, "running settings are the inventory's"))
    pending = health.get("pending") or []
    if pending:
        rows.append(
            _row(
                "restart_pending",
                host,
                FAIL,
                f"config on disk differs from the running process: {describe_drift(pending)}",
                {"pending": pending},
            )
        )
    elif health.get("restart_pending"):
        rows.append(
            _row("restart_pending", host, FAIL, "config file newer than the running process: restart pending")
        )
    else:
        rows.append(_row("restart_pending", host, OK, "the running process uses the config on disk"))
    return rows


def _router_config_row(host, stat, path, expected_sha1):
    hint = "run site.yml --tags routers"
    if stat is None or stat.get("failed"):
        return _row("router_config", host, FAIL, f"not read: {(stat or {}).get('msg', 'stat did not run')}")
    info = stat.get("stat") or {}
    if not info.get("exists"):
        return _row("router_config", host, FAIL, f"{path or 'config'} is missing: {hint}")
    deployed = info.get("checksum")
    data = {"path": path, "deployed_sha1": deployed, "expected_sha1": expected_sha1}
    if deployed != expected_sha1:
        return _row("router_config", host, FAIL, f"{path} differs from the model's rendering: {hint}", data)
    return _row("router_config", host, OK, f"{path} is the model's rendering", data)


def _router_backends_row(host, health, raw):
    if health is None:
        why = (raw or {}).get("msg", "router_health did not run")
        return _row("router_backends", host, FAIL, f"not read: {why}")
    if not health.get("answered"):
        why = health.get("error", "")
        return _row("router_backends", host, FAIL, f"router does not answer: {why}".strip())
    bad = health.get("bad") or []
    # A server of the router's own datacentre held as bad fails; another datacentre's shard
    # or proxy (a cross-datacentre timeout, the other side's maintenance) only warns: this
    # datacentre's maintenance takes nothing further out of that traffic's path.
    own = [item for item in bad if item.get("known", True)]
    elsewhere = [item for item in bad if not item.get("known", True)]

    def described(items):
        return ", ".join(f"{item.get('host')} ({item.get('status')})" for item in items)

    if own:
        detail = f"holds as bad: {described(own)}"
        if elsewhere:
            detail += f"; outside its datacentre: {described(elsewhere)}"
        return _row("router_backends", host, FAIL, detail, {"bad": bad})
    if elsewhere:
        detail = f"its datacentre's servers healthy; holds as bad outside it: {described(elsewhere)}"
        return _row("router_backends", host, WARN, detail, {"bad": bad})
    return _row("router_backends", host, OK, "every shard and gutter server healthy")


def _netfilter_row(host, result):
    if result is None or result.get("failed"):
        why = (result or {}).get("msg", "netfilter_rules did not run")
        return _row("netfilter", host, FAIL, f"not read: {why}")
    left = result.get("leftovers") or []
    if left:
        described = "; ".join(f"{item['family']}/{item['backend']}: {item['rule']}" for item in left)
        detail = f"drill/maintenance rules left: {described}"
        return _row("netfilter", host, FAIL, detail, {"leftovers": left})
    tables = ", ".join(result.get("tables_read") or [])
    return _row("netfilter", host, OK, f"no MCFLEET-DRILL*/MCFLEET-MAINT* rule ({tables})")


def _counters(probe):
    health = _usable(probe.get("memcached")) if probe else None
    if not health or health.get("failed") or not health.get("running"):
        return None
    return health.get("counters") or None


def build_checks(model, hosts, probes, expected_sha1=None, batch_size=1, target_release=None):
    """Every check's row for `hosts` (the play's hosts) from their registered `probes`.

    `probes`: {host: the preflight_probe result registered on it: "netfilter", "memcached"
    or "router" + "config" + "config_path"; or `unreachable`/`failed` with `msg`};
    `expected_sha1`: {router: SHA-1 of the model's rendering of its config}.
    `target_release`: during a rolling upgrade, the release hosts may already run.
    """
    expected_sha1 = expected_sha1 or {}
    order = {host: index for index, host in enumerate(model["hosts"])}
    in_play = sorted((host for host in hosts if host in model["hosts"]), key=order.get)
    rows = [
        _row(
            "topology",
            "all",
            OK,
            f"valid: {len(model['hosts'])} hosts in {len(model['datacentres'])} datacentres",
        )
    ]
    for host in in_play:
        rows.extend(
            _host_rows(
                host, model["hosts"][host], probes.get(host) or {}, expected_sha1.get(host), target_release
            )
        )
    for name in sorted({model["hosts"][host]["datacentre"] for host in in_play}):
        dc = model["datacentres"][name]
        main = {s["host"]: (_counters(probes.get(s["host"])) or {}).get("bytes") for s in dc["main"]}
        gutter = {}
        for server in dc["gutter"]:
            counters = _counters(probes.get(server["host"]))
            counters = counters or {}
            limit, used = counters.get("limit_maxbytes"), counters.get("bytes")
            gutter[server["host"]] = (limit, used) if limit is not None and used is not None else None
        shares = route_explain.datacentre_gutter_shares(model, name)
        rows.append(_row("gutter_capacity", name, *gutter_capacity(main, gutter, batch_size, shares)))
    return rows


def excuse_in_maintenance(rows, in_maintenance):
    """A resumed maintenance run: what is wrong only because of hosts it left out is a warning.

    A host the run was in the middle of (stopped, masked, held as bad by the routers) is
    exactly what the run will now finish; any other problem still fails.
    """
    hosts = set(in_maintenance or [])
    if not hosts:
        return rows
    excused = []
    for row in rows:
        bad = {item.get("host") for item in (row.get("data") or {}).get("bad") or []}
        if row["status"] == FAIL and (row["host"] in hosts or (bad and bad <= hosts)):
            row = {
                **row,
                "status": WARN,
                "detail": row["detail"] + " (in maintenance: the resumed run finishes it)",
            }
        excused.append(row)
    return excused


def failed(rows):
    return [row for row in rows if row["status"] == FAIL]


def summary(rows):
    return {status: sum(1 for row in rows if row["status"] == status) for status in STATUSES}


def scope_of(model, hosts):
    """'all', one datacentre's name, or the datacentres joined with '+' (for file names)."""
    in_play = {host for host in hosts if host in model["hosts"]}
    if in_play == set(model["hosts"]):
        return "all"
    names = sorted({model["hosts"][host]["datacentre"] for host in in_play})
    return "+".join(names) or "none"


def render_table(rows):
    """The rows as aligned text lines: CHECK HOST STATUS DETAIL."""
    header = ("CHECK", "HOST", "STATUS", "DETAIL")
    cells = [header] + [(row["check"], row["host"], row["status"], row["detail"]) for row in rows]
    widths = [max(len(str(cell[column])) for cell in cells) for column in range(3)]
    return [
        "  ".join(str(cell[column]).ljust(widths[column]) for column in range(3)) + "  " + str(cell[3])
        for cell in cells
    ]


def report(rows, scope, generated_at, batch_size):
    """The JSON document of one preflight run."""
    bad = failed(rows)
    return {
        "kind": "mcfleet-preflight",
        "generated_at": generated_at,
        "scope": scope,
        "batch_size": int(batch_size),
        "ok": not bad,
        "summary": summary(rows),
        "failed": [f"{row['check']} {row['host']}: {row['detail']}" for row in bad],
        "checks": rows,
    }


def plain(value):
    """Registered results as plain JSON data (Ansible hands them over in its own types)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return str(value)
