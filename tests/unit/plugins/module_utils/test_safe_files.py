"""safe_files, and every writer that uses it, against a symlink or a directory planted first.

Each planted link points at a victim file; a writer that followed it would change the victim.
The tests run as root (make test does), where following a link is exactly the hazard.
"""

from __future__ import annotations

import json
import os

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils import (
    charts,
    failover_verify,
    maintenance_lock,
    maintenance_progress,
    safe_files,
    shard_block,
    traffic,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.safe_files import (
    UnsafePath,
    check_directory,
    open_new,
    replace_file,
    safe_directory,
)

VICTIM_TEXT = "root's own file\n"


@pytest.fixture(name="victim")
def fixture_victim(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text(VICTIM_TEXT)
    return victim


def planted_link(directory, name, victim):
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / name
    link.symlink_to(victim)
    return link


def test_open_new_refuses_a_planted_symlink_and_leaves_its_target_alone(tmp_path, victim):
    link = planted_link(tmp_path / "work", "traffic.jsonl", victim)
    with pytest.raises(UnsafePath, match=r"traffic.jsonl: a symlink is there"):
        open_new(str(link))
    assert victim.read_text() == VICTIM_TEXT

    fresh = tmp_path / "work" / "fresh.jsonl"
    with open_new(str(fresh)) as stream:
        stream.write("{}\n")
    assert fresh.read_text() == "{}\n" and (fresh.stat().st_mode & 0o777) == 0o644


def test_replace_file_replaces_a_planted_symlink_instead_of_writing_through_it(tmp_path, victim):
    link = planted_link(tmp_path / "state", "verify.json", victim)
    replace_file(str(link), '{"ok": true}\n')
    assert victim.read_text() == VICTIM_TEXT
    assert not link.is_symlink() and link.read_text() == '{"ok": true}\n'
    # No temporary file is left beside it, whatever its name.
    assert sorted(path.name for path in (tmp_path / "state").iterdir()) == ["verify.json"]


def test_a_directory_writable_by_others_or_a_symlinked_one_is_refused(tmp_path, victim):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UnsafePath, match=r"shared: writable by other users \(mode 0777\)"):
        replace_file(str(shared / "report.json"), "{}")
    assert list(shared.iterdir()) == []

    # Sticky, as /tmp is: others cannot replace what we create in it.
    shared.chmod(0o1777)
    replace_file(str(shared / "mine" / "report.json"), "{}")
    assert (shared / "mine" / "report.json").read_text() == "{}"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "drill").symlink_to(elsewhere)
    with pytest.raises(UnsafePath, match=r"drill: not a directory \(a symlink or a file is there\)"):
        check_directory(str(tmp_path / "drill"))


def test_directories_it_creates_get_exactly_their_mode_whatever_the_umask(tmp_path):
    old_umask = os.umask(0o002)
    try:
        created = safe_directory(str(tmp_path / "a" / "b" / "c"), 0o700)
    finally:
        os.umask(old_umask)
    for path in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert (path.stat().st_mode & 0o777) == 0o700, path
    assert created == str(tmp_path / "a" / "b" / "c")


def test_a_directory_owned_by_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can give a directory to another user")
    planted = tmp_path / "mcfleet-drill"
    planted.mkdir()
    os.chown(planted, 65534, 65534)
    with pytest.raises(UnsafePath, match=r"mcfleet-drill: owned by uid 65534"):
        safe_directory(str(planted / "run-1"))
    assert not (planted / "run-1").exists() or list((planted / "run-1").iterdir()) == []


def test_every_writer_refuses_or_replaces_a_planted_symlink(tmp_path, victim, monkeypatch):
    """The places mcfleet writes as root: traffic timelines, the maintenance progress log, the
    verifier's state, the lock record, shard_block's rollback files and the reports' charts
    (render_configs and preflight_report write with replace_file too)."""
    # traffic.run: the timeline a drill's client writes.
    timeline = planted_link(tmp_path / "drill", "traffic-during.jsonl", victim)
    plan = traffic.default_plan(
        router={"address": "127.0.0.1", "port": 1, "engine": "memcached_proxy"},
        timeline=str(timeline),
        max_requests=1,
        max_duration_s=1,
    )
    with pytest.raises(UnsafePath):
        traffic.run(plan)

    # The run's progress log is appended to: a planted link is refused, not appended through.
    progress = planted_link(tmp_path / "run", "progress.jsonl", victim)
    with pytest.raises(OSError):
        maintenance_progress.append(str(progress), {"step": "plan"})

    # failover_verify's state, the lock record, shard_block's files, charts: replaced, not followed.
    state = planted_link(tmp_path / "verify", "verify.json", victim)
    failover_verify.save_state(str(state), {"phase": "during"})
    assert json.loads(state.read_text()) == {"phase": "during"}

    record = planted_link(tmp_path / "lock", "maintenance.lock", victim)
    maintenance_lock.write_record(str(record), {"id": "r1"})
    assert json.loads(record.read_text()) == {"id": "r1"} and (record.stat().st_mode & 0o777) == 0o600

    script = planted_link(tmp_path / "run-mcfleet", "rollback.sh", victim)
    shard_block.write_private_file(str(script), "#!/bin/sh\n", 0o700)
    assert script.read_text() == "#!/bin/sh\n"

    chart = planted_link(tmp_path / "reports", "drill-1.svg", victim)
    charts.write_files(str(tmp_path / "reports"), {"drill-1.svg": "<svg/>"})
    assert chart.read_text() == "<svg/>"

    assert victim.read_text() == VICTIM_TEXT
    for written in (state, record, script, chart):
        assert not written.is_symlink()
    assert safe_files.OTHERS_WRITE == 0o022
