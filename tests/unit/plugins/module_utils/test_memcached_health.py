"""Reading memcached's config file and `stats settings` into comparable settings."""

import os
import subprocess
import time

from ansible_collections.mcfleet.fleet.plugins.module_utils.memcached_health import (
    drift,
    hit_ratio,
    modified_after_start,
    parse_proxybe,
    parse_suspect_servers,
    process_started_at,
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


def test_a_process_start_is_read_to_the_clock_tick():
    # The start lies between the two clock readings whatever the load; the kernel counts it in
    # whole ticks, so it may read up to one tick early.
    tick = 1 / os.sysconf("SC_CLK_TCK")
    before = time.time()
    child = subprocess.Popen(["sleep", "30"])
    after = time.time()
    try:
        started = process_started_at(child.pid)
    finally:
        child.kill()
        child.wait()
    assert before - 2 * tick <= started <= after + tick


def test_a_config_written_just_before_the_start_is_older_than_the_process(tmp_path):
    # The maintenance writes the config, then starts memcached: never "newer than the process".
    config = tmp_path / "memcached.conf"
    config.write_text(CONFIG)
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert modified_after_start(str(config), child.pid) is False
    finally:
        child.kill()
        child.wait()


def test_a_config_written_after_the_start_is_newer(tmp_path):
    config = tmp_path / "memcached.conf"
    config.write_text(CONFIG)
    child = subprocess.Popen(["sleep", "30"])
    try:
        # Set, not slept: a second after the start, whatever the machine's load.
        started = process_started_at(child.pid)
        os.utime(config, (started + 1, started + 1))
        assert modified_after_start(str(config), child.pid) is True
    finally:
        child.kill()
        child.wait()


def test_an_unknown_process_has_no_start(tmp_path):
    assert process_started_at(2**22 + 1) is None
    assert modified_after_start(str(tmp_path), 2**22 + 1) is None
