"""A server's window out of service, described once for drills and maintenance."""

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils.shard_window import WindowError, describe_window
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import inventory_data


@pytest.fixture(scope="module")
def lab():
    groups, hostvars = inventory_data("lab")
    return build_topology(groups, hostvars)


@pytest.fixture(scope="module")
def eqiad():
    groups, hostvars = inventory_data("eqiad")
    return build_topology(groups, hostvars)


def test_a_drill_blocks_for_every_router_and_proxy_of_the_datacentre_and_never_stops_memcached(lab):
    window = describe_window(lab, "mc2001", act="hold", rollback_s=300, mode="drop", hold_s=4)
    codfw = lab["datacentres"]["codfw"]
    clients = codfw["routers"] + codfw["proxies_primary"] + codfw["proxies_secondary"]
    assert window["kind"] == "drill"
    assert window["chain"] == "MCFLEET-DRILL"
    assert window["mode"] == "drop"
    assert window["sources"] == sorted({client["address"] for client in clients})
    assert [router["host"] for router in window["routers"]] == [client["host"] for client in clients]
    assert not window["service_act"]
    assert not window["restore_memcached"]
    assert window["rollback_script"] == "/run/mcfleet/mcfleet-drill-rollback.sh"
    assert window["rejoin_policy"] == "keep"
    assert window["hold_s"] == 4
    assert not window["fail_on_violation"]
    # The shard itself is never among the servers that must answer before it goes out.
    assert "mc2001" not in [server["host"] for server in window["must_answer"]]
    assert [server["host"] for server in window["must_answer"]] == [s["host"] for s in codfw["gutter"]]


def test_a_flush_drill_rejoins_flushed(lab):
    assert describe_window(lab, "mc2001", act="flush", rollback_s=300)["rejoin_policy"] == "flush"


def test_a_maintenance_stops_memcached_and_its_timer_brings_it_back(lab):
    window = describe_window(lab, "mc1001", act="in_place", rollback_s=900, target_release="trixie")
    assert window["kind"] == "maintenance"
    assert window["chain"] == "MCFLEET-MAINT"
    assert window["service_act"]
    assert window["restore_memcached"]
    assert window["rollback_script"] == "/run/mcfleet/mcfleet-maint-rollback.sh"
    assert window["target_release"] == "trixie"
    assert window["fail_on_violation"]


def test_a_gutter_server_waits_for_every_main_shard_and_writes_no_canaries(lab):
    window = describe_window(lab, "mc-gp2001", act="restart", rollback_s=900)
    codfw = lab["datacentres"]["codfw"]
    expected = [s["host"] for s in codfw["main"] + codfw["gutter"] if s["host"] != "mc-gp2001"]
    assert [server["host"] for server in window["must_answer"]] == expected
    assert not window["canaries"]


def test_mcrouter_is_asked_on_loopback_the_memcached_proxy_on_its_address(lab, eqiad):
    for router in describe_window(lab, "mc1001", act="restart", rollback_s=60)["routers"]:
        assert router["engine"] == "memcached_proxy"
        assert router["address"] == lab["routers"][router["host"]]["address"]
    routers = describe_window(eqiad, "mc1019.eqiad.wmnet", act="restart", rollback_s=60)["routers"]
    assert routers and {router["engine"] for router in routers} == {"mcrouter"}
    assert {router["address"] for router in routers} == {"127.0.0.1"}


def test_retries_follow_the_longest_probe_delay(lab):
    window = describe_window(lab, "mc1001", act="restart", rollback_s=60)
    probe_s = lab["tko"]["probe_timeout_max_ms"] / 1000
    # Canaries are tried 2 s apart past one probe delay; re-admission 1 s apart past three.
    assert (window["canary_retries"] - 3) * 2 >= probe_s
    assert window["readmit_retries"] - 30 >= 3 * probe_s


@pytest.mark.parametrize(
    ("host", "choices", "message"),
    [
        ("mw1001", {"act": "restart", "rollback_s": 60}, "host=mw1001: not a memcached server"),
        ("mc1001", {"act": "reboot", "rollback_s": 60}, "act=reboot: not one of hold, flush, restart"),
        ("mc-gp1001", {"act": "hold", "rollback_s": 60}, "host=mc-gp1001: a drill blocks a main shard only"),
        ("mc1001", {"act": "hold", "rollback_s": 60, "mode": "sideways"}, "mode=sideways: not one of"),
        ("mc1001", {"act": "restart", "rollback_s": 60, "mode": "drop"}, "mode=drop: a maintenance rejects"),
        ("mc1001", {"act": "restart", "rollback_s": 0}, "rollback_s=0: must be a whole number from 1"),
        (
            "mc1001",
            {"act": "restart", "rollback_s": 60, "warmup_hit_ratio": 2},
            "warmup_hit_ratio=2: must be",
        ),
        ("mc1001", {"act": "hold", "rollback_s": 60, "hold_s": "x"}, "hold_s=x: must be a whole number"),
    ],
)
def test_each_bad_field_is_named_with_its_value(lab, host, choices, message):
    with pytest.raises(WindowError, match="^" + message.replace("(", r"\(")):
        describe_window(lab, host, **choices)


def test_a_restart_is_warm_only_where_memcached_keeps_its_cache_and_every_router_journals(lab, eqiad):
    warm = describe_window(lab, "mc2001", act="restart", rollback_s=900, warm_restart=True)
    assert warm["warm"] and warm["rejoin_replay"]
    assert warm["journal_path"] == "/var/lib/mcfleet-router/failover.journal"
    assert warm["rejoin_pending"] == "/var/lib/mcfleet/rejoin-pending"
    # A cold return replays the journals too: the gutter's keys warm it.
    cold = describe_window(lab, "mc2001", act="restart", rollback_s=900)
    assert not cold["warm"] and cold["rejoin_replay"]
    assert cold["warm_why"] == "memcached cannot keep its cache across this restart"
    gutter = describe_window(lab, "mc-gp2001", act="restart", rollback_s=900, warm_restart=True)
    assert (gutter["warm"], gutter["rejoin_replay"], gutter["warm_why"]) == (
        False,
        False,
        "a gutter server restarts cold",
    )
    # An in-place upgrade carries the memory file across its reboot; a reimage cannot.
    upgrade = describe_window(lab, "mc2001", act="in_place", rollback_s=900, warm_restart=True)
    assert upgrade["warm"] and upgrade["warm_why"].startswith("warm: the memory file is carried to disk")
    assert upgrade["rejoin_replay"]
    reimage = describe_window(lab, "mc2001", act="reimage", rollback_s=900, warm_restart=True)
    assert not reimage["warm"] and reimage["warm_why"] == "act reimage does not keep the cache"
    # Production eqiad routes with mcrouter, which journals nothing: cold, naming its routers.
    mcrouter = describe_window(eqiad, "mc1019.eqiad.wmnet", act="restart", rollback_s=900, warm_restart=True)
    assert not mcrouter["warm"] and not mcrouter["rejoin_replay"]
    assert mcrouter["warm_why"].startswith("routers that journal no failovers (mcrouter): mw1001.eqiad.wmnet")


def test_a_hold_drill_replays_the_journals_and_a_flush_drill_does_not(lab):
    assert describe_window(lab, "mc2001", act="hold", rollback_s=300)["rejoin_replay"]
    assert not describe_window(lab, "mc2001", act="flush", rollback_s=300)["rejoin_replay"]
