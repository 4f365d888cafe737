"""A shard's stale-safe return: the failover journal read and emptied, keys deleted on a real
memcached, the follower racing a router's re-admission, and the rollback's flush."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import MemcacheClient
from ansible_collections.mcfleet.fleet.plugins.module_utils.rejoin import (
    JournalError,
    empty_journal,
    follow,
    invalidate,
    read_journal,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.shard_block import FLUSH_PROGRAM
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import ReadOracle
from ansible_collections.mcfleet.fleet.tests.unit.failover_fixtures import MemcachedProcess, free_port


@pytest.fixture
def server():
    proc = MemcachedProcess()
    yield proc
    proc.stop()


def test_the_journal_gives_each_key_once_from_an_offset_and_a_time(tmp_path):
    journal = tmp_path / "failover.journal"
    journal.write_bytes(b"100 set a\n101 delete b\nnot a record\n102 set a\n103 set c\n104 md d")
    whole = read_journal(str(journal))
    # The last line has no newline yet (the proxy is writing it): left for the next read.
    assert whole["keys"] == ["a", "b", "c"]
    assert (whole["records"], whole["malformed"], whole["exists"]) == (4, 1, True)
    assert whole["offset"] == len(b"100 set a\n101 delete b\nnot a record\n102 set a\n103 set c\n")
    assert read_journal(str(journal), since=102)["keys"] == ["a", "c"]
    with journal.open("ab") as stream:
        stream.write(b"\n105 set e\n")
    later = read_journal(str(journal), offset=whole["offset"])
    assert later["keys"] == ["d", "e"] and later["offset"] == journal.stat().st_size
    capped = read_journal(str(journal), max_keys=2)
    assert capped["keys"] == ["a", "b"] and capped["truncated"]
    # An offset beyond the end: the journal was emptied since, and is read from its start.
    assert read_journal(str(journal), offset=10**6)["keys"] == ["a", "b", "c", "d", "e"]
    assert read_journal(str(tmp_path / "none"))["exists"] is False


def test_the_journal_is_never_read_or_emptied_through_a_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("100 set a\n")
    link = tmp_path / "failover.journal"
    link.symlink_to(target)
    with pytest.raises(JournalError):
        read_journal(str(link))
    with pytest.raises(JournalError):
        empty_journal(str(link))
    assert target.read_text() == "100 set a\n"


def test_emptying_a_journal_reports_its_size_and_check_mode_keeps_it(tmp_path):
    journal = tmp_path / "failover.journal"
    journal.write_text("100 set a\n")
    assert empty_journal(str(journal), check_mode=True) == {
        "changed": True,
        "size_before": 10,
        "exists": True,
    }
    assert journal.stat().st_size == 10
    assert empty_journal(str(journal))["changed"]
    assert journal.stat().st_size == 0
    assert empty_journal(str(journal))["changed"] is False
    assert empty_journal(str(tmp_path / "none")) == {"changed": False, "size_before": 0, "exists": False}


def test_invalidate_deletes_what_the_shard_holds_and_check_mode_only_counts(server):
    with MemcacheClient(*server.spec) as client:
        client.set("a", "1")
        client.set("b", "2")
        client.set("kept", "3")
        assert invalidate(*server.spec, ["a", "b", "c"], check_mode=True) == {
            "deleted": 2,
            "absent": 1,
            "copied": 0,
            "flushed": False,
        }
        assert client.get("a") == b"1"
        assert invalidate(*server.spec, ["a", "b", "c"]) == {
            "deleted": 2,
            "absent": 1,
            "copied": 0,
            "flushed": False,
        }
        assert (client.get("a"), client.get("b"), client.get("kept")) == (None, None, b"3")
        assert invalidate(*server.spec, [], flush=True)["flushed"]
        assert client.get("kept") is None


def test_a_key_the_gutter_still_holds_is_copied_with_the_time_it_has_left(server):
    gutter = MemcachedProcess()
    try:
        with MemcacheClient(*gutter.spec) as on_gutter, MemcacheClient(*server.spec) as shard:
            on_gutter.set("fresh", "new", exptime=600, flags=7)
            on_gutter.set("forever", "kept")
            on_gutter.set("expiring", "soon", exptime=1)
            for key in ("fresh", "forever", "expiring", "gone"):
                shard.set(key, "old")
            # An unreachable gutter server is skipped; the next one answers.
            result = invalidate(
                *server.spec,
                ["fresh", "forever", "expiring", "gone"],
                copy_from=[("127.0.0.1", free_port()), gutter.spec],
            )
            assert result == {"deleted": 2, "absent": 0, "copied": 2, "flushed": False}
            assert shard.get_many_with_ttl(["fresh", "forever"]) == {
                "fresh": (b"new", 7, shard.get_many_with_ttl(["fresh"])["fresh"][2]),
                "forever": (b"kept", 0, -1),
            }
            assert 590 <= shard.get_many_with_ttl(["fresh"])["fresh"][2] <= 600
            # About to expire on the gutter: not copied, deleted (the old value must not stay).
            assert shard.get("expiring") is None and shard.get("gone") is None
    finally:
        gutter.stop()


def test_the_follower_deletes_each_key_as_it_is_journalled_until_the_router_readmits(server, tmp_path):
    journal = tmp_path / "failover.journal"
    journal.write_text("100 set before\n")
    start_offset = journal.stat().st_size
    with MemcacheClient(*server.spec) as client:
        for key in ("before", "k1", "k2", "k3"):
            client.set(key, "stale")
    readmitted = threading.Event()

    def router_writes_to_the_gutter():
        for key in ("k1", "k2", "k3"):
            time.sleep(0.1)
            with journal.open("a") as stream:
                stream.write(f"{int(time.time())} set {key}\n")
        readmitted.set()

    writer = threading.Thread(target=router_writes_to_the_gutter)
    writer.start()
    result = follow(str(journal), start_offset, *server.spec, readmitted.is_set, max_s=30, grace_s=0.2)
    writer.join()
    assert (result["deleted"], result["absent"], result["undeleted"]) == (3, 0, [])
    assert result["offset"] == journal.stat().st_size
    assert result["readmitted_after_s"] is not None
    with MemcacheClient(*server.spec) as client:
        # Only what was journalled after the offset: the first pass deleted the rest.
        assert [client.get(key) for key in ("before", "k1", "k2", "k3")] == [b"stale", None, None, None]


def test_a_follower_that_never_reaches_the_shard_hands_its_keys_back(tmp_path):
    journal = tmp_path / "failover.journal"
    journal.write_text("100 set k1\n100 set k2\n")
    result = follow(str(journal), 0, "127.0.0.1", free_port(), lambda: False, max_s=0.5)
    assert result["undeleted"] == ["k1", "k2"] and result["deleted"] == 0
    assert result["readmitted_after_s"] is None


def test_the_rollback_flush_empties_a_shard_and_passes_on_one_that_is_down(server):
    with MemcacheClient(*server.spec) as client:
        client.set("stale", "1")
    flush = [sys.executable, "-c", FLUSH_PROGRAM]
    assert subprocess.run([*flush, "127.0.0.1", str(server.port)], check=False, timeout=30).returncode == 0
    with MemcacheClient(*server.spec) as client:
        assert client.get("stale") is None
    assert subprocess.run([*flush, "127.0.0.1", str(free_port())], check=False, timeout=30).returncode == 0


def test_the_read_oracle_flags_older_values_and_values_after_a_delete():
    oracle = ReadOracle()
    assert oracle.judge(1, b"5:x") is None  # never written by this client
    oracle.wrote(1, 5, acknowledged=True)
    assert oracle.judge(1, b"5:x") is None
    assert oracle.judge(1, None) is None  # a miss is never wrong
    oracle.wrote(1, 9, acknowledged=True)
    assert oracle.judge(1, b"5:x") == "stale"
    oracle.wrote(1, None, acknowledged=True)
    assert oracle.judge(1, b"9:x") == "resurrected"
    # A write without an acknowledgement may have landed (even late): its value is accepted.
    oracle.wrote(1, 12, acknowledged=False)
    assert oracle.judge(1, b"12:x") is None
    assert oracle.judge(1, b"9:x") == "resurrected"
