"""The maintenance lock on real files: decisions, atomic writes, the guard, and a real race.

Every call is given `now`, so no test depends on the clock or on how fast it runs.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import stat

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils import maintenance_lock, safe_files
from ansible_collections.mcfleet.fleet.plugins.module_utils.maintenance_lock import (
    MaintenanceLockError,
    acquire_lock,
    decide,
    read,
    release,
    release_lock,
    validate_path,
    validate_request,
)

NOW = 1735732800.0  # 2025-01-01T12:00:00Z
HOUR = 3600


def request(run_id="eqiad-restart-1", ttl_s=HOUR, **fields):
    defaults = {
        "datacentre": "eqiad",
        "kind": "maintenance restart",
        "reason": "memcached upgrade",
        "controller": "ctl1001.example.org",
        "user": "alice",
    }
    return validate_request(run_id, ttl_s, **{**defaults, **fields})


def drill(run_id="eqiad-drill-7", **fields):
    defaults = {
        "kind": "drill",
        "reason": "quarterly drill",
        "controller": "ctl2001.example.org",
        "user": "bob",
    }
    return request(run_id, **{**defaults, **fields})


@pytest.fixture
def lock_path(tmp_path):
    # A directory that does not exist yet: the first acquisition creates it.
    return str(tmp_path / "mcfleet" / "maintenance.lock")


def on_disk(path):
    with open(path) as stream:
        return json.load(stream)


def raw(path):
    with open(path, "rb") as stream:
        return stream.read()


def test_acquire_on_empty_writes_the_record_privately(lock_path):
    outcome = acquire_lock(lock_path, request(), now=NOW)
    assert (outcome.action, outcome.changed, outcome.before) == ("acquired", True, None)
    assert (
        on_disk(lock_path)
        == outcome.after
        == {
            "id": "eqiad-restart-1",
            "datacentre": "eqiad",
            "kind": "maintenance restart",
            "holder": {"controller": "ctl1001.example.org", "user": "alice"},
            "reason": "memcached upgrade",
            "started_at": NOW,
            "refreshed_at": NOW,
            "expires_at": NOW + HOUR,
            "broken": None,
        }
    )
    assert stat.S_IMODE(os.stat(os.path.dirname(lock_path)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(lock_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(lock_path + ".guard").st_mode) == 0o600


def test_another_run_is_refused_with_holder_reason_and_expiry(lock_path):
    acquire_lock(lock_path, request(), now=NOW)
    before = raw(lock_path)
    outcome = acquire_lock(lock_path, drill(), now=NOW + 600)
    assert (outcome.action, outcome.changed, outcome.failed) == ("refused", False, True)
    assert outcome.before["id"] == outcome.after["id"] == "eqiad-restart-1"
    for named in (
        "'eqiad-restart-1'",
        "maintenance restart",
        "'eqiad'",
        "'alice'",
        "'ctl1001.example.org'",
        "'memcached upgrade'",
        "started 2025-01-01T12:00:00Z",
        "expires 2025-01-01T13:00:00Z (in 3000s)",
        "break_reason",
    ):
        assert named in outcome.message
    assert raw(lock_path) == before


def test_refresh_by_the_same_run_keeps_start_and_moves_expiry(lock_path):
    acquire_lock(lock_path, request(), now=NOW)
    # A renewal that gives fewer details keeps the ones already recorded.
    renewal = validate_request("eqiad-restart-1", 2 * HOUR)
    outcome = acquire_lock(lock_path, renewal, now=NOW + 900)
    assert (outcome.action, outcome.changed) == ("refreshed", True)
    record = on_disk(lock_path)
    assert record["started_at"] == NOW
    assert record["refreshed_at"] == NOW + 900
    assert record["expires_at"] == NOW + 900 + 2 * HOUR
    assert record["holder"] == {"controller": "ctl1001.example.org", "user": "alice"}
    assert record["reason"] == "memcached upgrade"


def test_an_expired_lock_is_taken_over_and_named(lock_path):
    acquire_lock(lock_path, request(), now=NOW)
    # Exactly at expires_at the old lock binds no longer.
    outcome = acquire_lock(lock_path, drill(), now=NOW + HOUR)
    assert (outcome.action, outcome.changed) == ("acquired", True)
    assert "'eqiad-restart-1'" in outcome.message and "expired 2025-01-01T13:00:00Z" in outcome.message
    record = on_disk(lock_path)
    assert record["id"] == "eqiad-drill-7"
    assert record["started_at"] == NOW + HOUR
    assert record["broken"] is None


def test_break_with_a_reason_records_the_broken_lock(lock_path):
    acquire_lock(lock_path, request(), now=NOW)
    held = on_disk(lock_path)
    outcome = acquire_lock(lock_path, drill(break_reason="  ctl1001 lost power  "), now=NOW + 60)
    assert (outcome.action, outcome.changed) == ("broken", True)
    assert outcome.before == held
    record = on_disk(lock_path)
    assert record["id"] == "eqiad-drill-7" and record["holder"]["user"] == "bob"
    # The broken record is kept whole but for its own `broken` note (see below).
    del held["broken"]
    assert record["broken"] == {"lock": held, "reason": "ctl1001 lost power", "broken_at": NOW + 60}
    assert "ctl1001 lost power" in outcome.message

    # Breaking the breaker keeps one level: the record does not grow with each break.
    acquire_lock(lock_path, request("eqiad-restart-2", break_reason="bob left"), now=NOW + 120)
    assert on_disk(lock_path)["broken"]["lock"]["id"] == "eqiad-drill-7"
    assert "broken" not in on_disk(lock_path)["broken"]["lock"]


def test_a_blank_break_reason_breaks_nothing(lock_path):
    acquire_lock(lock_path, request(), now=NOW)
    outcome = acquire_lock(lock_path, drill(break_reason="   "), now=NOW + 60)
    assert outcome.action == "refused"
    assert on_disk(lock_path)["id"] == "eqiad-restart-1"


def test_a_refresh_keeps_the_note_of_a_broken_lock(lock_path):
    acquire_lock(lock_path, request(), now=NOW)
    acquire_lock(lock_path, drill(break_reason="dead controller"), now=NOW + 60)
    acquire_lock(lock_path, drill(), now=NOW + 120)
    record = on_disk(lock_path)
    assert record["started_at"] == NOW + 60
    assert record["broken"]["reason"] == "dead controller"


def test_release_by_the_holder_removes_the_lock_then_is_a_no_op(lock_path):
    acquire_lock(lock_path, request(), now=NOW)
    outcome = release_lock(lock_path, "eqiad-restart-1", now=NOW + 60)
    assert (outcome.action, outcome.changed, outcome.after) == ("released", True, None)
    assert outcome.before["id"] == "eqiad-restart-1"
    assert not os.path.exists(lock_path)
    outcome = release_lock(lock_path, "eqiad-restart-1", now=NOW + 61)
    assert (outcome.action, outcome.changed, outcome.before) == ("absent", False, None)


def test_release_where_nothing_was_ever_locked_creates_nothing(tmp_path):
    path = str(tmp_path / "missing" / "maintenance.lock")
    outcome = release_lock(path, "eqiad-restart-1", now=NOW)
    assert (outcome.action, outcome.changed) == ("absent", False)
    assert os.listdir(tmp_path) == []


def test_release_of_another_runs_lock_is_refused_naming_the_holder(lock_path):
    acquire_lock(lock_path, request(), now=NOW)
    outcome = release_lock(lock_path, "eqiad-drill-7", now=NOW + 60)
    assert (outcome.action, outcome.changed, outcome.failed) == ("refused", False, True)
    assert "'eqiad-drill-7' cannot release" in outcome.message
    assert "'eqiad-restart-1'" in outcome.message and "'alice'" in outcome.message
    assert "'ctl1001.example.org'" in outcome.message
    assert on_disk(lock_path)["id"] == "eqiad-restart-1"
    # Even once expired, it is not this run's to remove.
    late = release(on_disk(lock_path), "eqiad-drill-7", NOW + 2 * HOUR)
    assert late.action == "refuse" and "expired 2025-01-01T13:00:00Z" in late.message


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b'{"id": "eqiad-restart-1", "expi', "Unterminated string"),
        (b"", "empty file"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"id": "", "started_at": 1, "expires_at": 2}', "no run id"),
        (b'{"id": "r", "started_at": 1, "expires_at": "soon"}', "expires_at is not a number"),
        (b'{"id": "r", "started_at": 1, "expires_at": 2, "holder": "bob"}', "holder is not a JSON object"),
        (b"\xff\xfe\x00", "codec can't decode"),
    ],
)
def test_an_unreadable_file_counts_as_an_expired_lock(lock_path, content, error):
    os.makedirs(os.path.dirname(lock_path))
    with open(lock_path, "wb") as stream:
        stream.write(content)
    current = read(lock_path)
    assert current["unreadable"] is True and current["path"] == lock_path
    assert error in current["error"]
    assert decide(current, drill(), NOW).action == "acquire"

    # Release leaves it alone: whose it was cannot be told.
    outcome = release_lock(lock_path, "eqiad-drill-7", now=NOW)
    assert (outcome.action, outcome.changed, outcome.after) == ("absent", False, None)
    assert "unreadable" in outcome.message
    assert raw(lock_path) == content

    outcome = acquire_lock(lock_path, drill(), now=NOW)
    assert (outcome.action, outcome.changed) == ("acquired", True)
    assert outcome.before["unreadable"] is True
    assert "unreadable lock file" in outcome.message and lock_path in outcome.message
    assert on_disk(lock_path)["id"] == "eqiad-drill-7"


def test_a_lock_path_that_cannot_be_read_is_an_error_not_a_free_lock(lock_path):
    os.makedirs(lock_path)
    with pytest.raises(MaintenanceLockError, match="cannot read the maintenance lock"):
        read(lock_path)


def test_writes_leave_no_temporary_files_behind(lock_path):
    directory = os.path.dirname(lock_path)
    names = {"maintenance.lock", "maintenance.lock.guard"}
    acquire_lock(lock_path, request(), now=NOW)
    assert set(os.listdir(directory)) == names
    acquire_lock(lock_path, request(), now=NOW + 60)
    assert set(os.listdir(directory)) == names
    acquire_lock(lock_path, drill(break_reason="test"), now=NOW + 120)
    assert set(os.listdir(directory)) == names
    release_lock(lock_path, "eqiad-drill-7", now=NOW + 180)
    assert set(os.listdir(directory)) == {"maintenance.lock.guard"}


def test_a_failed_write_keeps_the_old_lock_and_no_temporary_file(lock_path, monkeypatch):
    acquire_lock(lock_path, request(), now=NOW)
    held = raw(lock_path)
    created = []
    # The record is written by safe_files.replace_file.
    real_mkstemp = safe_files.tempfile.mkstemp

    def recording_mkstemp(**kwargs):
        handle, name = real_mkstemp(**kwargs)
        created.append(name)
        return handle, name

    def failing_replace(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safe_files.tempfile, "mkstemp", recording_mkstemp)
    monkeypatch.setattr(safe_files.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        acquire_lock(lock_path, request(), now=NOW + 60)
    # The temporary file was made beside the lock, under a name mkstemp chose, and is gone.
    assert len(created) == 1 and os.path.dirname(created[0]) == os.path.dirname(lock_path)
    assert not os.path.exists(created[0])
    assert raw(lock_path) == held
    assert set(os.listdir(os.path.dirname(lock_path))) == {"maintenance.lock", "maintenance.lock.guard"}


def test_check_mode_decides_but_writes_nothing(lock_path):
    outcome = acquire_lock(lock_path, request(), check_mode=True, now=NOW)
    assert (outcome.action, outcome.changed) == ("acquired", True)
    assert outcome.after["expires_at"] == NOW + HOUR
    assert not os.path.exists(os.path.dirname(lock_path))

    acquire_lock(lock_path, request(), now=NOW)
    held = raw(lock_path)
    assert acquire_lock(lock_path, drill(break_reason="x"), check_mode=True, now=NOW + 1).action == "broken"
    assert release_lock(lock_path, "eqiad-restart-1", check_mode=True, now=NOW + 1).action == "released"
    assert raw(lock_path) == held


def test_read_decide_write_runs_under_the_guard(lock_path, monkeypatch):
    seen = []
    real_decide = maintenance_lock.decide

    def decide_and_probe_the_guard(current, lock_request, now):
        # A second open file description cannot take the flock while acquire_lock holds it.
        probe = os.open(lock_path + ".guard", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append(lock_request.run_id)
        finally:
            os.close(probe)
        return real_decide(current, lock_request, now)

    monkeypatch.setattr(maintenance_lock, "decide", decide_and_probe_the_guard)
    acquire_lock(lock_path, request(), now=NOW)
    assert seen == ["eqiad-restart-1"]
    # Released afterwards: the next caller gets it at once.
    probe = os.open(lock_path + ".guard", os.O_RDWR)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(probe)


def _race(path, run_id, barrier, results):
    barrier.wait(timeout=60)
    try:
        outcome = acquire_lock(path, request(run_id, controller=f"ctl-{run_id}"), now=NOW)
        results.put((run_id, outcome.action, outcome.message))
    except Exception as error:  # reported to the parent, which fails the test
        results.put((run_id, "error", repr(error)))


def test_of_racing_controllers_exactly_one_wins(lock_path):
    os.makedirs(os.path.dirname(lock_path))
    context = multiprocessing.get_context("fork")
    racers = [f"run-{number}" for number in range(6)]
    barrier = context.Barrier(len(racers))
    results = context.Queue()
    processes = [
        context.Process(target=_race, args=(lock_path, run_id, barrier, results)) for run_id in racers
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _racer in racers]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    winners = [run_id for run_id, action, _message in outcomes if action == "acquired"]
    assert len(winners) == 1, outcomes
    actions = sorted(action for _run, action, _message in outcomes)
    assert actions == ["acquired"] + ["refused"] * (len(racers) - 1)
    assert on_disk(lock_path)["id"] == winners[0]
    # Every loser was refused by the winner, not by some other loser's lock.
    assert all(f"'{winners[0]}'" in message for _run, action, message in outcomes if action == "refused")


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (lambda: validate_request("run-1", 0), "ttl_s=0"),
        (lambda: validate_request("run-1", 86401), "ttl_s=86401"),
        (lambda: validate_request("run-1", True), "ttl_s=True"),
        (lambda: validate_request("run-1", "60"), "ttl_s='60'"),
        (lambda: validate_request("", 60), "id=''"),
        (lambda: validate_request("run 1", 60), "id='run 1'"),
        (lambda: validate_request("run/1", 60), "id='run/1'"),
        (lambda: validate_request(None, 60), "id=None"),
        (lambda: validate_path("var/lib/maintenance.lock"), "path='var/lib/maintenance.lock'"),
        (lambda: validate_path("/var/lib/mcfleet/"), "path='/var/lib/mcfleet/'"),
        (lambda: release_lock("/tmp/x.lock", "bad id"), "id='bad id'"),
        (lambda: acquire_lock("relative.lock", request()), "path='relative.lock'"),
    ],
)
def test_bad_input_is_refused_naming_field_and_value(check, message):
    with pytest.raises(MaintenanceLockError) as refused:
        check()
    assert message in str(refused.value)


def test_the_run_id_allows_the_ids_the_playbooks_make():
    assert validate_request("eqiad-restart-20250101T120000Z", 1).run_id == "eqiad-restart-20250101T120000Z"
    assert validate_request("drill:eqiad.v2_1", 86400).ttl_s == 86400
