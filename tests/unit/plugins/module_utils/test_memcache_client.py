"""The stdlib memcached client the modules use, cross-checked against pymemcache."""

from __future__ import annotations

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import (
    MemcacheClient,
    MemcacheConnectionError,
    MemcacheTimeout,
    parse_server,
)
from ansible_collections.mcfleet.fleet.tests.unit.failover_fixtures import MemcachedProcess, free_port
from pymemcache.client.base import Client as PyMemcache


# One memcached per test, not per module: `ansible-test units` runs each test in a forked
# child, which never tears down a module-scoped fixture, so its memcached would outlive the run.
@pytest.fixture
def server():
    proc = MemcachedProcess()
    yield proc
    proc.stop()


def test_round_trip_agrees_with_pymemcache(server):
    ours = MemcacheClient(*server.spec)
    theirs = PyMemcache(server.spec)
    assert ours.set("k1", "v1") is True
    assert theirs.get("k1") == b"v1"
    theirs.set("k2", b"\x00binary\r\nvalue")
    assert ours.get_many(["k1", "k2", "absent"]) == {"k1": b"v1", "k2": b"\x00binary\r\nvalue"}
    value, cas = ours.gets("k1")
    their_value, their_cas = theirs.gets("k1")
    assert (value, cas) == (their_value, int(their_cas)) and cas > 0
    assert ours.delete("k1") is True and ours.delete("k1") is False
    assert theirs.get("k1") is None
    assert ours.version() == theirs.version().decode()
    assert int(ours.stats()["cmd_set"]) >= 2
    ours.flush_all()
    assert theirs.get("k2") is None


def test_meta_reads_agree_with_text_reads(server):
    """read_protocol="meta" (how we read through memcached's proxy) returns what text get does."""
    text = MemcacheClient(*server.spec)
    meta = MemcacheClient(*server.spec, read_protocol="meta")
    keys = [f"meta-{i}" for i in range(50)]
    for i, key in enumerate(keys[::2]):
        assert text.set(key, b"\x00v\r\n" * i, flags=i)
    assert meta.get_many([*keys, "meta-absent"]) == text.get_many(keys)
    assert len(meta.get_many(keys)) == 25
    assert meta.gets("meta-0") == text.gets("meta-0")
    assert meta.get("meta-1") is None and meta.gets("meta-1") is None
    # The same connection stays usable after a pipelined batch with misses in it.
    assert meta.set("meta-after", "x") and meta.get("meta-after") == b"x"


def test_unknown_read_protocol_is_refused():
    with pytest.raises(ValueError, match="read_protocol"):
        MemcacheClient("127.0.0.1", 11211, read_protocol="binary")


def test_expiry_is_honoured(server):
    import time

    ours = MemcacheClient(*server.spec)
    assert ours.set("short", "x", exptime=1)
    time.sleep(2.1)
    assert ours.get("short") is None


def test_failures_are_typed_and_the_client_recovers(server):
    with pytest.raises(MemcacheConnectionError):
        MemcacheClient("127.0.0.1", free_port(), timeout_s=0.5).version()
    client = MemcacheClient(*server.spec, timeout_s=0.3)
    assert client.set("before-pause", "1")
    server.pause()
    try:
        with pytest.raises(MemcacheTimeout):
            client.get("before-pause")
    finally:
        server.resume()
    # The late reply of the timed-out request must not be read as this one's answer.
    assert client.set("after-pause", "2") is True
    assert client.get_many(["before-pause", "after-pause"]) == {"before-pause": b"1", "after-pause": b"2"}


def test_bad_keys_are_refused_before_sending():
    client = MemcacheClient("127.0.0.1", 1)
    for key in ("", "with space", "x" * 251, "tab\there"):
        with pytest.raises(ValueError):
            client.get(key)


def test_parse_server():
    assert parse_server("10.0.0.1:11213") == ("10.0.0.1", 11213)
    assert parse_server("[::1]:11211") == ("::1", 11211)
    assert parse_server("mc1001") == ("mc1001", 11211)
    assert parse_server({"address": "10.89.213.15", "port": 11213}) == ("10.89.213.15", 11213)
