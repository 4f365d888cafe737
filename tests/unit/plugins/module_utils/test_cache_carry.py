"""An in-place upgrade's warm return: memcached's saved cache carried to disk and back, then
read by a real memcached started on it."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import tempfile
import time

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils import cache_carry
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import MemcacheClient
from ansible_collections.mcfleet.fleet.tests.unit.failover_fixtures import MemcachedProcess

KEYS = {f"carried{i}": f"value{i}".encode() * 20 for i in range(500)}


@pytest.fixture
def cache_dir():
    """A directory memcached can write its memory file in (it runs as nobody under root)."""
    directory = tempfile.mkdtemp(prefix="mcfleet-carry-")
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(directory, nobody.pw_uid, nobody.pw_gid)
    yield directory
    shutil.rmtree(directory)


def owner():
    account = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    return account.pw_uid, account.pw_gid


def stop_saving(server):
    server.proc.send_signal(signal.SIGUSR1)
    server.proc.wait(timeout=30)


def test_a_saved_cache_carried_to_disk_and_back_starts_memcached_warm(cache_dir, tmp_path):
    memory_file = os.path.join(cache_dir, "memory_file")
    server = MemcachedProcess(memory_mb=64, extra_args=("-e", memory_file))
    try:
        with MemcacheClient(*server.spec) as client:
            for key, value in KEYS.items():
                assert client.set(key, value)
    finally:
        stop_saving(server)
    store = str(tmp_path / "store")

    saved = cache_carry.save(memory_file, store, "run-1")
    assert saved["saved"], saved
    # All 64 MiB are read; only what is not zero takes room on disk.
    assert saved["bytes"] >= 64 * 2**20
    assert 0 < saved["written"] < saved["bytes"]
    assert sorted(os.listdir(store)) == ["carried-by", "memory_file", "memory_file.meta"]
    assert os.stat(os.path.join(store, "memory_file")).st_blocks * 512 < saved["bytes"]

    # The reboot empties the tmpfs.
    os.unlink(memory_file)
    os.unlink(f"{memory_file}.meta")
    restored = cache_carry.restore(memory_file, store, "run-1", *owner())
    assert restored["restored"], restored
    assert os.listdir(store) == []
    assert os.stat(memory_file).st_uid == owner()[0]

    # memcached refuses a cache saved in the same second as its start.
    time.sleep(1.1)
    server = MemcachedProcess(memory_mb=64, extra_args=("-e", memory_file))
    try:
        with MemcacheClient(*server.spec) as client:
            assert client.get_many(list(KEYS)) == KEYS
    finally:
        server.stop()


def test_only_the_run_that_saved_a_copy_restores_it(cache_dir, tmp_path):
    memory_file = os.path.join(cache_dir, "memory_file")
    for path in (memory_file, f"{memory_file}.meta"):
        with open(path, "wb") as handle:
            handle.write(b"saved")
    store = str(tmp_path / "store")
    assert cache_carry.save(memory_file, store, "run-1")["saved"]
    os.unlink(memory_file)

    refused = cache_carry.restore(memory_file, store, "run-2", *owner())
    assert not refused["restored"]
    assert "no cache saved by run run-2" in refused["why"]
    assert not os.path.exists(memory_file)
    # A later window's save replaces the earlier copy before anything else.
    with open(memory_file, "wb") as handle:
        handle.write(b"newer")
    assert cache_carry.save(memory_file, store, "run-2")["saved"]
    assert cache_carry.restore(memory_file, store, "run-2", *owner())["restored"]
    with open(memory_file, "rb") as handle:
        assert handle.read() == b"newer"


def test_nothing_is_carried_when_memcached_saved_nothing_or_the_disk_is_too_small(
    cache_dir, tmp_path, monkeypatch
):
    memory_file = os.path.join(cache_dir, "memory_file")
    with open(memory_file, "wb") as handle:
        handle.write(b"x" * 4096)
    store = str(tmp_path / "store")
    unsaved = cache_carry.save(memory_file, store, "run-1")
    assert not unsaved["saved"] and "memory_file.meta is missing" in unsaved["why"]

    with open(f"{memory_file}.meta", "wb") as handle:
        handle.write(b"meta")
    monkeypatch.setattr(cache_carry, "_free", lambda directory: cache_carry.MARGIN_BYTES)
    crowded = cache_carry.save(memory_file, store, "run-1")
    assert not crowded["saved"] and "a cold restart" in crowded["why"]
    assert os.listdir(store) == []


def test_a_store_others_can_write_to_is_refused(tmp_path):
    store = tmp_path / "store"
    store.mkdir(mode=0o777)
    store.chmod(0o777)
    memory_file = tmp_path / "memory_file"
    memory_file.write_bytes(b"x")
    (tmp_path / "memory_file.meta").write_bytes(b"m")
    with pytest.raises(cache_carry.CarryError, match="writable by others"):
        cache_carry.save(str(memory_file), str(store), "run-1")
