"""Preflight's pure logic: expected settings, clock skew, gutter room, rows, table and report."""

import json

import pytest
from ansible_collections.mcfleet.fleet.plugins.filter.mcfleet import (
    memcached_expected_settings,
    memcached_role_defaults,
    router_config_path,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils import preflight
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import inventory_data, small_fleet

MB = 1024 * 1024


def test_expected_settings_take_the_inventory_then_the_role_defaults():
    defaults = memcached_role_defaults()
    settings = memcached_expected_settings({"memcached_memory_mb": 64, "memcached_threads": 2}, 11211)
    assert settings == {
        "tcpport": 11211,
        "maxbytes": 64 * MB,
        "num_threads": 2,
        "maxconns": defaults["memcached_max_connections"],
        "growth_factor": float(defaults["memcached_growth_factor"]),
        "chunk_size": defaults["memcached_min_slab_size"],
        "item_size_max": defaults["memcached_max_item_size_kb"] * 1024,
    }


def test_expected_settings_of_the_lab_inventory():
    _groups, hostvars = inventory_data("lab")
    variables = {name: value for name, value in hostvars["mc2001"].items() if name.startswith("memcached_")}
    settings = memcached_expected_settings(variables, 11211)
    assert settings["maxbytes"] == 64 * MB
    assert settings["maxconns"] == 4096
    assert settings["num_threads"] == 2


def test_expected_settings_numbers_given_as_text():
    settings = preflight.expected_settings({"memcached_memory_mb": "128"}, {"memcached_threads": 4}, "11311")
    assert settings == {"tcpport": 11311, "maxbytes": 128 * MB, "num_threads": 4}


@pytest.mark.parametrize(
    ("host_time", "expected"),
    [(100.5, 0.0), (100.0, 0.0), (101.0, 0.0), (99.0, -1.0), (103.5, 2.5)],
)
def test_clock_skew_allows_for_the_round_trip(host_time, expected):
    assert preflight.clock_skew(host_time, 100.0, 101.0) == pytest.approx(expected)


def test_clock_check_fails_beyond_one_second_outside_the_window():
    status, detail, data = preflight.clock_check(1002.2, 1000.0, 1001.0)
    assert status == preflight.FAIL
    assert "1.200 s ahead" in detail
    assert data["round_trip_s"] == 1.0
    assert preflight.clock_check(999.2, 1000.0, 1000.1)[0] == preflight.OK
    status, detail, _data = preflight.clock_check(998.0, 1000.0, 1000.1)
    assert status == preflight.FAIL and "behind" in detail


def test_gutter_capacity_needs_room_for_the_largest_shards_of_a_batch():
    main = {"mc1": 30 * MB, "mc2": 50 * MB, "mc3": 40 * MB}
    gutter = {"gp1": (64 * MB, 4 * MB), "gp2": (64 * MB, 30 * MB)}  # 60 + 34 = 94 MiB free
    status, detail, data = preflight.gutter_capacity(main, gutter, batch_size=1)
    assert status == preflight.OK
    assert data["need_bytes"] == 50 * MB and data["free_bytes"] == 94 * MB
    assert [item["host"] for item in data["largest_shards"]] == ["mc2"]
    status, _detail, data = preflight.gutter_capacity(main, gutter, batch_size=2)
    assert (status, data["need_bytes"]) == (preflight.OK, 90 * MB)
    status, detail, data = preflight.gutter_capacity(main, gutter, batch_size=3)
    assert (status, data["need_bytes"]) == (preflight.FAIL, 120 * MB)
    assert detail.startswith("not enough room")


def test_gutter_capacity_checks_each_gutter_servers_share_of_the_keys():
    """The pool has 94 MiB free, but the routers' hashing sends all of mc2's keys to gp2 (34 MiB free)."""
    main = {"mc1": 30 * MB, "mc2": 50 * MB, "mc3": 40 * MB}
    gutter = {"gp1": (64 * MB, 4 * MB), "gp2": (64 * MB, 30 * MB)}
    nested = {"mc1": {"gp1": 1.0}, "mc2": {"gp2": 1.0}, "mc3": {"gp1": 0.5, "gp2": 0.5}}
    status, detail, _data = preflight.gutter_capacity(main, gutter, 1, nested)
    assert status == preflight.FAIL
    assert detail.startswith("not enough room on one gutter server: batch_size=1:")
    assert f"gp2 would take {50 * MB} bytes (mc2 {50 * MB}) and has {34 * MB} free" in detail
    even = {shard: {"gp1": 0.5, "gp2": 0.5} for shard in main}
    assert preflight.gutter_capacity(main, gutter, 1, even)[0] == preflight.OK


def test_gutter_capacity_unknowns():
    status, _detail, _data = preflight.gutter_capacity({"mc1": 10}, {"gp1": None}, 1)
    assert status == preflight.FAIL
    status, detail, _data = preflight.gutter_capacity({"mc1": 10, "mc2": None}, {"gp1": (100, 0)}, 1)
    assert status == preflight.WARN and "mc2" in detail
    # A full gutter server counts as no room, never as negative room.
    assert (
        preflight.gutter_capacity({"mc1": 10}, {"gp1": (100, 150), "gp2": (20, 0)}, 1)[2]["free_bytes"] == 20
    )
    assert preflight.gutter_capacity({"mc1": 10}, {"gp1": (100, 0)}, 0)[0] == preflight.FAIL


def _memcached_probe(**health):
    result = {
        "running": True,
        "version": "1.6.18",
        "release": "bookworm",
        "time": 1000.05,
        "controller_sent": 1000.0,
        "controller_received": 1000.1,
        "drift": [],
        "pending": [],
        "restart_pending": False,
        "counters": {"bytes": 10 * MB, "limit_maxbytes": 64 * MB},
    }
    result.update(health)
    return {"netfilter": {"leftovers": [], "tables_read": ["ipv4/nf_tables"]}, "memcached": result}


def _router_probe(sha1="abc", **health):
    result = {
        "answered": True,
        "bad": [],
        "release": "trixie",
        "time": 1000.05,
        "controller_sent": 1000.0,
        "controller_received": 1000.1,
    }
    result.update(health)
    return {
        "netfilter": {"leftovers": [], "tables_read": ["ipv4/nf_tables"]},
        "router": result,
        "config": {"stat": {"exists": True, "checksum": sha1}},
        "config_path": "/etc/mcfleet/proxy.lua",
    }


@pytest.fixture
def fleet():
    groups, hostvars = small_fleet()
    for host, hvars in hostvars.items():
        hvars["mcfleet_release"] = "trixie" if host.startswith("mw") else "bookworm"
    return build_topology(groups, hostvars)


def _healthy_probes(model):
    return {
        host: (_memcached_probe() if entry["pool"] in ("main", "gutter") else _router_probe())
        for host, entry in model["hosts"].items()
    }


def _status(rows, check, host):
    return next(row for row in rows if row["check"] == check and row["host"] == host)


def test_healthy_fleet_has_no_failure(fleet):
    probes = _healthy_probes(fleet)
    sha1 = dict.fromkeys(fleet["routers"], "abc")
    rows = preflight.build_checks(fleet, list(fleet["hosts"]), probes, sha1)
    # mwproxy hosts have mcfleet_release trixie in the fixture, like mw hosts.
    assert preflight.failed(rows) == []
    # Certificates are checked where the playbook names some (tests in test_tls_material.py).
    assert {row["check"] for row in rows} == set(preflight.CHECKS) - {"certificates"}
    assert [row["host"] for row in rows if row["check"] == "gutter_capacity"] == ["codfw", "eqiad"]


def test_every_failure_names_host_and_detail(fleet):
    probes = _healthy_probes(fleet)
    probes["mc2001"] = _memcached_probe(
        drift=[{"setting": "maxbytes", "expected": 64 * MB, "actual": MB}],
        pending=[{"setting": "num_threads", "expected": 4, "actual": 2}],
        restart_pending=True,
        release="bullseye",
        time=1003.0,
    )
    probes["mc2002"] = _memcached_probe(running=False, error="connection refused")
    probes["mc2002"]["netfilter"]["leftovers"] = [
        {
            "family": "ipv6",
            "backend": "nf_tables",
            "kind": "chain",
            "chain": "MCFLEET-DRILL",
            "rule": "-N MCFLEET-DRILL",
        }
    ]
    probes["mw2001"] = _router_probe(sha1="old", bad=[{"host": "mc2002", "status": "marked bad (1)"}])
    probes["mw1001"] = {"unreachable": True, "msg": "container not running"}
    sha1 = dict.fromkeys(fleet["routers"], "abc")
    rows = preflight.build_checks(fleet, list(fleet["hosts"]), probes, sha1)
    failed = {(row["check"], row["host"]): row["detail"] for row in preflight.failed(rows)}
    assert failed[("settings", "mc2001")] == f"maxbytes: expected {64 * MB}, actual {MB}"
    assert "num_threads: expected 4, actual 2" in failed[("restart_pending", "mc2001")]
    assert failed[("release", "mc2001")] == "runs bullseye, expected bookworm"
    assert "ahead of the controller" in failed[("clock", "mc2001")]
    assert "connection refused" in failed[("memcached", "mc2002")]
    assert "ipv6/nf_tables: -N MCFLEET-DRILL" in failed[("netfilter", "mc2002")]
    assert "differs" in failed[("router_config", "mw2001")]
    assert "site.yml --tags routers" in failed[("router_config", "mw2001")]
    assert failed[("router_backends", "mw2001")] == "holds as bad: mc2002 (marked bad (1))"
    assert failed[("reachable", "mw1001")] == "unreachable: container not running"
    # An unreachable host gets one row, not a row per check it could not run.
    assert [row["check"] for row in rows if row["host"] == "mw1001"] == ["reachable"]
    # mc2002 did not answer: its bytes are unknown, the gutter still has room for mc2001.
    assert _status(rows, "gutter_capacity", "codfw")["status"] == preflight.WARN


def test_another_datacentres_bad_backend_warns_and_its_own_fails(fleet):
    probes = _healthy_probes(fleet)
    elsewhere = {"host": "mc1001", "known": False, "status": "marked bad (3)"}
    probes["mw2001"] = _router_probe(bad=[elsewhere])
    probes["mw1001"] = _router_probe(
        bad=[{"host": "mc1002", "known": True, "status": "marked bad (1)"}, elsewhere]
    )
    sha1 = dict.fromkeys(fleet["routers"], "abc")
    rows = preflight.build_checks(fleet, list(fleet["hosts"]), probes, sha1)
    codfw = _status(rows, "router_backends", "mw2001")
    assert codfw["status"] == preflight.WARN
    assert codfw["detail"] == (
        "its datacentre's servers healthy; holds as bad outside it: mc1001 (marked bad (3))"
    )
    eqiad = _status(rows, "router_backends", "mw1001")
    assert eqiad["status"] == preflight.FAIL
    assert eqiad["detail"] == (
        "holds as bad: mc1002 (marked bad (1)); outside its datacentre: mc1001 (marked bad (3))"
    )


def test_missing_release_is_a_warning():
    model = build_topology(*small_fleet())
    probes = {"mc1001": _memcached_probe()}
    rows = preflight.build_checks(model, ["mc1001"], probes)
    assert _status(rows, "release", "mc1001")["status"] == preflight.WARN


def test_table_and_report(fleet):
    probes = _healthy_probes(fleet)
    probes["mc1001"] = _memcached_probe(running=False, error="refused")
    rows = preflight.build_checks(
        fleet, [h for h in fleet["hosts"] if fleet["hosts"][h]["datacentre"] == "eqiad"], probes
    )
    lines = preflight.render_table(rows)
    assert lines[0].split() == ["CHECK", "HOST", "STATUS", "DETAIL"]
    # Columns line up: every status starts at the same offset.
    offset = lines[0].index("STATUS")
    assert all(line[offset:].split()[0] in ("STATUS", "ok", "warn", "FAIL") for line in lines)
    assert preflight.scope_of(fleet, [h for h in fleet["hosts"] if h.endswith("1") and "1" in h[:4]]) != "all"
    assert preflight.scope_of(fleet, list(fleet["hosts"])) == "all"
    assert preflight.scope_of(fleet, ["mc2001", "mw2001"]) == "codfw"
    document = preflight.report(rows, "eqiad", "2026-01-01T00:00:00+00:00", 1)
    assert json.loads(json.dumps(document)) == document
    assert document["ok"] is False
    assert document["summary"]["FAIL"] == len(document["failed"]) >= 1
    assert document["failed"][0].startswith("memcached mc1001: not running")
    assert all(row["host"] != "mc2001" for row in document["checks"])


def test_plain_turns_ansible_types_into_json():
    class Tagged(str):
        pass

    assert preflight.plain({"a": (1, Tagged("x")), 2: None}) == {"a": [1, "x"], "2": None}
    plain = preflight.plain({"a": Tagged("x")})["a"]
    assert isinstance(plain, str) and not isinstance(plain, Tagged)


def test_router_config_path_prefers_the_inventory(fleet):
    assert router_config_path(fleet, "mw1001") == "/etc/mcrouter/config.json"
    assert router_config_path(fleet, "mw1001", "/srv/mcrouter.json") == "/srv/mcrouter.json"


def test_unreachable_message_is_one_line(fleet):
    probes = _healthy_probes(fleet)
    probes["mc2001"] = {"unreachable": True, "msg": "EOF on stream;\nError: " + "x" * 300 + " improper"}
    rows = preflight.build_checks(fleet, ["mc2001"], probes)
    detail = _status(rows, "reachable", "mc2001")["detail"]
    assert "\n" not in detail and detail.endswith("x improper") and len(detail) < 230
