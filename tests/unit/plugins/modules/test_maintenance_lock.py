"""mcfleet.fleet.maintenance_lock's main(): arguments, check mode, diff, changed and refusals.

Locks here expire an hour or more after they are taken, so the real clock the module reads
never decides an outcome; an expired lock is written with a past expiry.
"""

from __future__ import annotations

import json
import os

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mcfleet.fleet.plugins.modules import maintenance_lock as module


class ModuleExit(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


@pytest.fixture
def warned(monkeypatch):
    said = []

    def exit_json(self, **result):
        raise ModuleExit(result)

    def fail_json(self, msg, **result):
        raise ModuleExit({"failed": True, "msg": msg, **result})

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, warning: said.append(warning))
    return said


@pytest.fixture
def lock_path(tmp_path):
    return str(tmp_path / "mcfleet" / "maintenance.lock")


@pytest.fixture
def run(lock_path, warned):
    def call(check_mode=False, **params):
        args = {"path": lock_path, "_ansible_diff": True, "_ansible_check_mode": check_mode, **params}
        with patch_module_args(args), pytest.raises(ModuleExit) as exited:
            module.main()
        return exited.value.result

    return call


RESTART = {
    "id": "eqiad-restart-1",
    "datacentre": "eqiad",
    "kind": "maintenance restart",
    "reason": "memcached upgrade",
    "controller": "ctl1001.example.org",
    "user": "alice",
    "ttl_s": 3600,
}
DRILL = {
    "id": "eqiad-drill-7",
    "datacentre": "eqiad",
    "kind": "drill",
    "reason": "quarterly drill",
    "controller": "ctl2001.example.org",
    "user": "bob",
    "ttl_s": 1800,
}


def on_disk(path):
    with open(path) as stream:
        return json.load(stream)


def raw(path):
    with open(path, "rb") as stream:
        return stream.read()


def test_acquire_reports_the_record_and_a_diff_from_nothing(run, lock_path, warned):
    result = run(**RESTART)
    assert not result.get("failed")
    assert (result["changed"], result["action"], result["holder"]) == (True, "acquired", None)
    assert result["lock"] == on_disk(lock_path)
    assert result["lock"]["holder"] == {"controller": "ctl1001.example.org", "user": "alice"}
    assert result["lock"]["expires_at"] - result["lock"]["started_at"] == 3600
    assert result["diff"]["before"] == ""
    assert json.loads(result["diff"]["after"]) == result["lock"]
    assert result["diff"]["before_header"] == result["diff"]["after_header"] == lock_path
    assert warned == []


def test_check_mode_says_what_it_would_take_and_writes_nothing(run, lock_path):
    result = run(check_mode=True, **RESTART)
    assert (result["changed"], result["action"]) == (True, "acquired")
    assert result["lock"]["id"] == "eqiad-restart-1"
    assert json.loads(result["diff"]["after"])["id"] == "eqiad-restart-1"
    assert not os.path.exists(os.path.dirname(lock_path))

    run(**RESTART)
    held = raw(lock_path)
    for params in (RESTART, {**DRILL, "break_reason": "dead"}, {"id": "eqiad-restart-1", "state": "absent"}):
        result = run(check_mode=True, **params)
        assert result["changed"] is True and not result.get("failed")
    assert raw(lock_path) == held
    assert sorted(os.listdir(os.path.dirname(lock_path))) == ["maintenance.lock", "maintenance.lock.guard"]


def test_a_refresh_is_a_change_that_keeps_the_start(run, lock_path):
    first = run(**RESTART)["lock"]
    result = run(**{**RESTART, "ttl_s": 7200})
    assert (result["changed"], result["action"]) == (True, "refreshed")
    assert result["lock"]["started_at"] == first["started_at"]
    assert result["lock"]["expires_at"] == result["lock"]["refreshed_at"] + 7200
    assert result["holder"] == first
    assert json.loads(result["diff"]["before"]) == first
    assert json.loads(result["diff"]["after"]) == on_disk(lock_path) == result["lock"]


def test_another_run_fails_naming_the_holder_and_changes_nothing(run, lock_path):
    held = run(**RESTART)["lock"]
    result = run(**DRILL)
    assert result["failed"] is True
    assert (result["changed"], result["action"]) == (False, "refused")
    assert result["holder"] == result["lock"] == held
    for named in (
        "'eqiad-restart-1'",
        "'alice'",
        "'ctl1001.example.org'",
        "'memcached upgrade'",
        "break_reason",
    ):
        assert named in result["msg"]
    assert result["diff"]["before"] == result["diff"]["after"]
    assert on_disk(lock_path) == held


def test_break_takes_over_and_warns(run, lock_path, warned):
    held = run(**RESTART)["lock"]
    result = run(**{**DRILL, "break_reason": "ctl1001 lost power"})
    assert (result["changed"], result["action"]) == (True, "broken")
    assert result["holder"] == held
    assert result["lock"]["broken"]["lock"] == {key: value for key, value in held.items() if key != "broken"}
    assert result["lock"]["broken"]["reason"] == "ctl1001 lost power"
    assert on_disk(lock_path)["id"] == "eqiad-drill-7"
    assert len(warned) == 1 and "broke the lock of run 'eqiad-restart-1'" in warned[0]


def test_an_expired_lock_is_taken_with_a_warning(run, lock_path, warned):
    os.makedirs(os.path.dirname(lock_path))
    stale = {**run(check_mode=True, **RESTART)["lock"], "started_at": 1000.0, "expires_at": 4600.0}
    with open(lock_path, "w") as stream:
        json.dump(stale, stream)
    result = run(**DRILL)
    assert (result["changed"], result["action"]) == (True, "acquired")
    assert result["holder"] == stale
    assert len(warned) == 1 and "expired 1970-01-01T01:16:40Z" in warned[0]


def test_a_torn_lock_file_is_replaced_with_a_warning(run, lock_path, warned):
    os.makedirs(os.path.dirname(lock_path))
    with open(lock_path, "w") as stream:
        stream.write('{"id": "eqiad-restart-1", "started_')
    result = run(**DRILL)
    assert (result["changed"], result["action"]) == (True, "acquired")
    assert result["holder"]["unreadable"] is True
    assert on_disk(lock_path)["id"] == "eqiad-drill-7"
    assert len(warned) == 1 and "unreadable" in warned[0]


def test_release_is_a_change_only_for_the_holder(run, lock_path):
    held = run(**RESTART)["lock"]
    result = run(id="eqiad-drill-7", state="absent")
    assert result["failed"] is True and result["action"] == "refused" and result["changed"] is False
    assert "'alice'" in result["msg"] and "'ctl1001.example.org'" in result["msg"]
    assert on_disk(lock_path) == held

    result = run(id="eqiad-restart-1", state="absent")
    assert (result["changed"], result["action"], result["lock"]) == (True, "released", None)
    assert json.loads(result["diff"]["before"]) == held and result["diff"]["after"] == ""
    assert not os.path.exists(lock_path)

    result = run(id="eqiad-restart-1", state="absent")
    assert (result["changed"], result["action"], result["holder"]) == (False, "absent", None)
    assert not result.get("failed")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({**RESTART, "ttl_s": 0}, "ttl_s=0"),
        ({**RESTART, "ttl_s": 90000}, "ttl_s=90000"),
        ({**RESTART, "id": "run one"}, "id='run one'"),
        ({**RESTART, "path": "maintenance.lock"}, "path='maintenance.lock'"),
        ({key: value for key, value in RESTART.items() if key != "ttl_s"}, "ttl_s"),
    ],
)
def test_bad_arguments_fail_naming_field_and_value(run, lock_path, params, message):
    result = run(**params)
    assert result["failed"] is True and message in result["msg"]
    assert not os.path.exists(os.path.dirname(lock_path))
