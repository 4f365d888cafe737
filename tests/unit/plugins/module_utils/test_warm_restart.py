"""Whether a restart keeps the cache: from the config a restart would start on, against the
running server's `stats settings` (memcached_health's own parsing and drift)."""

from ansible_collections.mcfleet.fleet.plugins.module_utils.memcached_health import (
    drift,
    settings_from_config,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.warm_restart import check

FILE = "/var/lib/memcached-restart/memory_file"
CONFIG = f"-p 11211\n-m 64\n-f 1.15\n-n 48\n-I 1024k\n-e {FILE}\n-o modern,slab_reassign\n"
# What 1.6.18 answers to `stats settings` when started on CONFIG (the fields compared).
RUNNING = {
    "tcpport": 11211,
    "maxbytes": 64 * 1024 * 1024,
    "growth_factor": 1.15,
    "chunk_size": 48,
    "item_size_max": 1024 * 1024,
    "memory_file": FILE,
    "slab_reassign": True,
}


def health_for(config, running=None, is_running=True):
    """What memcached_health reports for `config` on disk against `running` (RUNNING if None)."""
    running = RUNNING if running is None else running
    return {"running": is_running, "pending": drift(settings_from_config(config), running)}


def test_the_config_names_its_memory_file():
    assert settings_from_config(CONFIG)["memory_file"] == FILE


def test_an_unchanged_layout_with_the_file_in_use_keeps_the_cache():
    assert check(health_for(CONFIG), FILE) == {
        "possible": True,
        "why": f"memcached would start again with the items of {FILE}",
    }


def test_a_restart_that_changes_the_layout_starts_empty_and_says_which_setting():
    verdict = check(health_for(CONFIG.replace("-m 64", "-m 128")), FILE)
    assert not verdict["possible"]
    assert f"maxbytes {64 * 1024 * 1024} -> {128 * 1024 * 1024}" in verdict["why"]


def test_the_first_restart_after_the_file_is_set_is_cold():
    running_without_file = {**RUNNING, "memory_file": "(null)"}
    verdict = check(health_for(CONFIG, running_without_file), FILE)
    assert not verdict["possible"]
    assert "the first restart after memcached_restart_file is set starts empty" in verdict["why"]


def test_no_file_extstore_or_a_stopped_server_keep_nothing():
    assert check(health_for(CONFIG), "")["why"] == "memcached_restart_file is not set"
    assert "extstore is on" in check(health_for(CONFIG), FILE, "/var/lib/memcached/extstore")["why"]
    assert not check(health_for(CONFIG, is_running=False), FILE)["possible"]


def test_a_change_outside_the_layout_still_keeps_the_cache():
    # -c (connections) is not in the restart metadata: the cache survives it.
    verdict = check(health_for(CONFIG + "-c 2048\n", {**RUNNING, "maxconns": 1024}), FILE)
    assert verdict["possible"]
