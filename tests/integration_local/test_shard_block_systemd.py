"""mcfleet_shard_block's rollback timer with real systemd, in a container this test creates.

The module runs through Ansible (ad-hoc, podman connection) exactly as a playbook would
call it; the timer fires for real and must leave no rule behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINER = "mcfleet-test-block"
# Another suite: MCFLEET_TEST_SUITE=bullseye (or trixie) pytest tests/test_shard_block_systemd.py
IMAGE = f"localhost/mcfleet-debian:{os.environ.get('MCFLEET_TEST_SUITE', 'bookworm')}"
CHAIN = "MCFLEET-DRILL"
UNIT = "mcfleet-drill-rollback"
SETTLED = ("running", "degraded")
FOREIGN_RULE = ["-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"]

pytestmark = pytest.mark.skipif(not shutil.which("podman"), reason="podman is not installed")


def podman(*argv, check=True):
    return subprocess.run(["podman", *argv], check=check, capture_output=True, text=True)


def in_container(*argv, check=True):
    return podman("exec", CONTAINER, *argv, check=check)


@pytest.fixture(scope="module")
def container():
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.fail(f"{IMAGE} is missing: run lab/bootstrap.sh first")
    podman("rm", "-f", CONTAINER, check=False)
    # No network: the module needs none, and nothing can leak out.
    run_options = ["--name", CONTAINER, "--network", "none", "--systemd=always", "--privileged"]
    podman("run", "-d", *run_options, IMAGE, "/sbin/init")
    try:
        wait_for_systemd()
        yield CONTAINER
    finally:
        podman("rm", "-f", CONTAINER, check=False)


def wait_for_systemd(timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while in_container("systemctl", "is-system-running", check=False).stdout.strip() not in SETTLED:
        if podman("inspect", "-f", "{{.State.Running}}", CONTAINER).stdout.strip() != "true":
            # Seen when many systemd containers run at once: each holds inotify instances.
            limit = Path("/proc/sys/fs/inotify/max_user_instances").read_text().strip()
            pytest.fail(
                f"systemd in {IMAGE} exited at once; fs.inotify.max_user_instances={limit} may be used up"
            )
        assert time.monotonic() < deadline, "systemd did not come up in the test container"
        time.sleep(0.5)


def shard_block(*args, check_mode=False):
    """Run the module through Ansible, as a playbook task would; returns its result."""
    argv = [str(REPO / ".venv/bin/ansible"), "all", "-i", f"{CONTAINER},", "-c", "containers.podman.podman"]
    argv += ["-m", "mcfleet.fleet.shard_block", "-a", " ".join(args)]
    if check_mode:
        argv.append("--check")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    }
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert "{" in done.stdout, f"no module result: {done.stdout}{done.stderr}"
    # Other enabled callbacks (profile_tasks) print around the JSON document.
    report, _end = json.JSONDecoder().raw_decode(done.stdout[done.stdout.index("{") :])
    return report["plays"][0]["tasks"][0]["hosts"][CONTAINER]


def drill_rules(binary="iptables"):
    listing = in_container(binary, "-S").stdout.splitlines()
    return [rule for rule in listing if CHAIN in rule]


def timer_active():
    return in_container("systemctl", "is-active", "--quiet", f"{UNIT}.timer", check=False).returncode == 0


def wait_until_lifted(binaries, result, late_s=30):
    """Wait for the timer to lift the block; returns how far from its stated expiry that happened."""
    expires_at = datetime.fromisoformat(result["rollback_timer"]["expires_at"]).timestamp()
    while any(drill_rules(binary) for binary in binaries):
        assert time.time() < expires_at + late_s, f"block still in place {late_s}s after {expires_at}"
        time.sleep(0.2)
    return time.time() - expires_at


def test_timer_lifts_the_block_when_the_controller_never_does(container):
    in_container("iptables", *FOREIGN_RULE)
    foreign = in_container("iptables", "-S").stdout

    blocked = shard_block("rollback_after_s=20", "mode=drop", "flush_conntrack=false")
    assert blocked["changed"] is True
    assert blocked["rollback_timer"] == {**blocked["rollback_timer"], "unit": UNIT, "armed": True}
    # The rules as the module read them back after applying: a read from here could come after
    # the timer fired on a loaded machine (one Ansible run can take longer than the rollback).
    assert len(blocked["rules"]["ipv4"]) == 3 and len(blocked["rules"]["ipv6"]) == 3

    # The controller now goes away; only the on-host timer can lift the block.
    lifted_late_by = wait_until_lifted(("iptables", "ip6tables"), blocked)
    # expires_at is in whole seconds, hence the 1.5 s of slack before it.
    assert lifted_late_by >= -1.5, lifted_late_by
    assert in_container("iptables", "-S").stdout == foreign
    assert not timer_active()
    assert in_container("test", "-e", blocked["record"], check=False).returncode != 0

    # The controller coming back finds nothing left to lift; a second drill is clean.
    assert shard_block("state=absent")["changed"] is False
    again = shard_block("rollback_after_s=300", "sources=10.89.213.21,fd00:89::21")
    assert again["changed"] is True and again["families"] == ["ipv4", "ipv6"]
    assert timer_active()
    assert shard_block("rollback_after_s=300", "sources=10.89.213.21,fd00:89::21")["changed"] is False
    lifted = shard_block("state=absent")
    assert lifted["changed"] is True and lifted["rollback_timer"]["armed"] is False
    assert not timer_active()
    assert drill_rules("iptables") == [] and drill_rules("ip6tables") == []
    assert in_container("iptables", "-S").stdout == foreign
    in_container("iptables", "-D", *FOREIGN_RULE[1:])


def test_check_mode_arms_nothing(container):
    dry = shard_block("rollback_after_s=5", check_mode=True)
    assert dry["changed"] is True
    assert not timer_active()
    assert drill_rules() == []


def test_timer_lifts_a_legacy_block_with_legacy_iptables(container):
    blocked = shard_block("rollback_after_s=15", "backend=legacy", "sources=10.89.213.21")
    assert blocked["backend"] == "legacy"
    assert len(blocked["rules"]["ipv4"]) == 3
    assert drill_rules("iptables-nft") == []
    assert wait_until_lifted(("iptables-legacy",), blocked) >= -1.5
    assert not timer_active()


def test_bad_rollback_is_refused_before_anything_is_armed(container):
    failed = shard_block("rollback_after_s=0")
    assert failed.get("failed") is True
    assert "rollback_after_s=0" in failed["msg"]
    assert not timer_active()
    assert drill_rules() == []


# A stand-in for memcached under real systemd: it runs only on a config that says "good",
# and its check (in place of the role's memcached-check-config) accepts only such a config.
STAND_IN_UNIT = "[Service]\nExecStart=/bin/sh -c 'grep -q good /etc/memcached.conf && exec sleep infinity'\n"
STAND_IN_CHECK = '#!/bin/sh\ngrep -q good "$1"\n'


def maintenance_rules():
    return [rule for rule in in_container("iptables", "-S").stdout.splitlines() if "MCFLEET-MAINT" in rule]


def write_in_container(path, text, mode="0644"):
    subprocess.run(
        ["podman", "exec", "-i", CONTAINER, "sh", "-c", 'mkdir -p "${1%/*}" && cat > "$1"', "sh", path],
        input=text,
        text=True,
        check=True,
        capture_output=True,
    )
    in_container("chmod", mode, path)


def memcached_left_out(config):
    """memcached stopped and masked with `config` in place, as a maintenance leaves it mid-host."""
    write_in_container("/lib/systemd/system/memcached.service", STAND_IN_UNIT)
    write_in_container("/usr/local/sbin/memcached-check-config", STAND_IN_CHECK, "0755")
    write_in_container("/var/lib/mcfleet/memcached.conf.known-good", "-m 64 # good\n", "0600")
    write_in_container("/etc/memcached.conf", config + "\n")
    in_container("systemctl", "unmask", "memcached.service", check=False)
    in_container("systemctl", "daemon-reload")
    in_container("systemctl", "stop", "memcached.service", check=False)
    in_container("systemctl", "mask", "memcached.service")


def memcached_state():
    active = in_container("systemctl", "is-active", "memcached.service", check=False).stdout.strip()
    enabled = in_container("systemctl", "is-enabled", "memcached.service", check=False).stdout.strip()
    return active, enabled, in_container("cat", "/etc/memcached.conf").stdout.strip()


def fire_maintenance_rollback():
    blocked = shard_block("rollback_after_s=5", "chain=MCFLEET-MAINT", "restore_memcached=true")
    assert blocked["changed"] is True and blocked["rules"]["ipv4"]
    expires_at = datetime.fromisoformat(blocked["rollback_timer"]["expires_at"]).timestamp()
    # Bounded by systemd's start of the stand-in, on a machine that may be loaded.
    while maintenance_rules():
        assert time.time() < expires_at + 60, "the maintenance block outlived its timer by a minute"
        time.sleep(0.5)


def test_timer_brings_back_memcached_on_its_new_config_when_that_is_good(container):
    memcached_left_out("-m 128 # good, and new")
    fire_maintenance_rollback()
    assert memcached_state() == ("active", "static", "-m 128 # good, and new")


def test_timer_brings_back_memcached_on_the_known_good_config_when_the_new_one_is_bad(container):
    memcached_left_out("-o bogus")
    fire_maintenance_rollback()
    assert memcached_state() == ("active", "static", "-m 64 # good")


BOOT_FILES = (
    "/etc/systemd/system/multi-user.target.wants/mcfleet-maint-rearm.service",
    "/etc/systemd/system/mcfleet-maint-rearm.service",
    "/var/lib/mcfleet/boot/mcfleet-maint-arm.sh",
    "/var/lib/mcfleet/boot/mcfleet-maint-rollback.sh",
)


def test_a_reboot_under_a_block_still_brings_memcached_back(container):
    """An in-place upgrade reboots with memcached masked; the reboot empties iptables and /run
    and ends the transient timer. If its controller died then, the next boot must arm the
    rollback again from the copy on disk."""
    memcached_left_out("-m 128 # good, and new")
    # Long enough that the boot files are still there when read, and the restart comes before
    # the deadline, on a loaded machine; the boot unit then arms what is left of it.
    blocked = shard_block(
        "rollback_after_s=30", "chain=MCFLEET-MAINT", "restore_memcached=true", "survive_reboot=true"
    )
    assert blocked["changed"] is True and blocked["rules"]["ipv4"]
    assert all(in_container("test", "-e", path, check=False).returncode == 0 for path in BOOT_FILES)

    podman("restart", "--time", "2", CONTAINER)
    wait_for_systemd()
    # Nothing of the first boot's block or timer is left: only the boot unit can restore it.
    deadline = datetime.fromisoformat(blocked["rollback_timer"]["expires_at"]).timestamp() + 60
    while memcached_state()[0] != "active":
        assert time.time() < deadline, f"memcached not back a minute after the deadline: {memcached_state()}"
        time.sleep(0.5)
    assert memcached_state() == ("active", "static", "-m 128 # good, and new")
    # Done once: the next boot arms nothing. The rollback removes its boot files last, after it
    # started memcached and lifted the block: waited for, not read the moment memcached is up.
    while any(in_container("test", "-e", path, check=False).returncode == 0 for path in BOOT_FILES):
        assert time.time() < deadline, "the rollback left its boot files a minute after the deadline"
        time.sleep(0.5)


def test_lifting_a_block_that_survives_reboots_removes_its_boot_unit(container):
    block = ("rollback_after_s=300", "chain=MCFLEET-MAINT", "survive_reboot=true")
    assert shard_block(*block)["changed"] is True
    assert shard_block(*block)["changed"] is False
    lifted = shard_block("state=absent", "chain=MCFLEET-MAINT")
    assert lifted["changed"] is True and not maintenance_rules()
    assert all(in_container("test", "-e", path, check=False).returncode != 0 for path in BOOT_FILES)
