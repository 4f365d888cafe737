"""Reading memcached's config file and `stats settings` into comparable settings."""

from ansible_collections.mcfleet.fleet.plugins.module_utils.memcached_health import (
    drift,
    hit_ratio,
    parse_proxybe,
    parse_suspect_servers,
    settings_from_config,
)

CONFIG = """# Ansible managed
-p 11211
-U 0
-m 64
-c 4096
-t 2
-f 1.15
-n 48
-I 1024k
-l 10.89.213.11
-o modern,lru_maintainer,no_lru_crawler,slab_reassign,slab_automove=1
"""


def test_the_config_file_becomes_stats_settings():
    assert settings_from_config(CONFIG) == {
        "tcpport": 11211,
        "udpport": 0,
        "maxbytes": 64 * 1024 * 1024,
        "maxconns": 4096,
        "num_threads": 2,
        "growth_factor": 1.15,
        "chunk_size": 48,
        "item_size_max": 1024 * 1024,
        "lru_maintainer_thread": True,
        "lru_crawler": False,
        "slab_reassign": True,
        "slab_automove": 1,
    }


def test_drift_names_each_setting_with_expected_and_actual_values():
    running = {
        "maxbytes": b"67108864",
        "growth_factor": 1.15000001,
        "lru_crawler": b"yes",
        "slab_automove": True,
    }
    expected = {"maxbytes": 134217728, "growth_factor": 1.15, "lru_crawler": False, "slab_automove": 1}
    assert drift(expected, running) == [
        {"setting": "lru_crawler", "expected": False, "actual": True},
        {"setting": "maxbytes", "expected": 134217728, "actual": 67108864},
    ]


def test_hit_ratio_and_bad_backends():
    assert hit_ratio({"get_hits": 3, "get_misses": 1}) == 0.75
    assert hit_ratio({"get_hits": 0, "get_misses": 0}) is None
    bad = parse_proxybe({"bad_mc2001": "2"}, [{"host": "mc2001"}])
    assert bad == [{"host": "mc2001", "known": True, "status": "marked bad (2)"}]


def test_bad_backends_say_whether_the_datacentre_knows_them():
    backends = [{"host": "mc2001", "address": "10.0.0.1", "port": 11211}]
    assert parse_proxybe({"bad_mc1001": "1"}, backends) == [
        {"host": "mc1001", "known": False, "status": "marked bad (1)"}
    ]
    suspects = {"10.0.0.1:11211": b"status:tko num_failures:3", "10.0.9.9:11211": "status:tko num_failures:1"}
    assert parse_suspect_servers(suspects, backends) == [
        {
            "host": "10.0.9.9:11211",
            "endpoint": "10.0.9.9:11211",
            "known": False,
            "status": "status:tko num_failures:1",
        },
        {
            "host": "mc2001",
            "endpoint": "10.0.0.1:11211",
            "known": True,
            "status": "status:tko num_failures:3",
        },
    ]
