"""mcfleet_shard_block's input checks and backend detection, without a host (no root needed).

tests/unit/plugins/modules/test_shard_block_namespaces.py runs the module against real
iptables/ip6tables, memcached and conntrack in network namespaces (as root).
"""

from __future__ import annotations

import os
import stat
import subprocess
import time

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter import validate_netns
from ansible_collections.mcfleet.fleet.plugins.module_utils.shard_block import (
    DrillPaths,
    ShardBlockError,
    boot_arm_script,
    boot_unit,
    parse_backend,
    validate_chain,
    validate_request,
    validate_rollback_after,
)

PORT = 11211


def test_parse_backend_reads_every_iptables_generation():
    assert parse_backend("iptables v1.8.9 (nf_tables)\n") == "nf_tables"
    assert parse_backend("iptables v1.8.7 (legacy)\n") == "legacy"
    assert parse_backend("iptables v1.6.1\n") == "legacy"
    with pytest.raises(ShardBlockError, match="cannot tell"):
        parse_backend("nft v1.0.6")


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (validate_rollback_after, 0, "rollback_after_s=0"),
        (validate_rollback_after, -5, "rollback_after_s=-5"),
        (validate_rollback_after, None, "rollback_after_s=None"),
        (validate_chain, "INPUT", "chain='INPUT'"),
        (validate_chain, "MCFLEET-MEMCACHED", "chain='MCFLEET-MEMCACHED'"),
        (validate_chain, "MCFLEET-DRILL-" + "X" * 20, "chain='MCFLEET-DRILL-XXXX"),
        (validate_netns, "bad name!", "netns='bad name!'"),
    ],
)
def test_bad_fields_are_refused_naming_field_and_value(check, value, message):
    with pytest.raises(ShardBlockError) as refused:
        check(value)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("port", "mode", "sources", "message"),
    [
        (0, "reject", [], "port=0"),
        (70000, "reject", [], "port=70000"),
        (22, "reject", [], "port=22"),
        (PORT, "explode", [], "mode='explode'"),
        (PORT, "reject", ["mw1001"], "sources[0]='mw1001'"),
        (PORT, "reject", ["10.89.250.2", "10.89.250.1/24"], "sources[1]='10.89.250.1/24'"),
        (PORT, "reject", ["127.0.0.1"], "sources[0]='127.0.0.1'"),
    ],
)
def test_bad_requests_are_refused_naming_field_and_value(port, mode, sources, message):
    with pytest.raises(ShardBlockError) as refused:
        validate_request(port, mode, sources)
    assert message in str(refused.value)


def test_a_request_keeps_each_source_once_in_order():
    request = validate_request(PORT, "drop", ["2001:db8::31", "10.89.250.3", "10.89.250.2/32", "10.89.250.3"])
    assert [str(network) for network in request.sources] == [
        "10.89.250.2/32",
        "10.89.250.3/32",
        "2001:db8::31/128",
    ]
    assert request.families() == {"ipv4", "ipv6"}


def run_boot_arm_script(tmp_path, deadline):
    """The boot's arm script run by sh, with systemd-run and systemctl replaced by recorders
    (no systemd runs here): returns the arguments it gave systemd-run."""
    shims = tmp_path / "bin"
    shims.mkdir()
    calls = tmp_path / "systemd-run.args"
    for name, body in (("systemd-run", f'printf "%s\\n" "$@" > {calls}'), ("systemctl", "exit 0")):
        shim = shims / name
        shim.write_text(f"#!/bin/sh\n{body}\n")
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    paths = DrillPaths(str(tmp_path), "MCFLEET-MAINT")
    script = tmp_path / "arm.sh"
    script.write_text(boot_arm_script(paths, deadline))
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"}
    subprocess.run(["sh", str(script)], check=True, env=env)
    return calls.read_text().splitlines()


def test_the_boot_arms_the_rollback_again_for_the_time_left(tmp_path):
    args = run_boot_arm_script(tmp_path, time.time() + 100)
    delay = next(arg for arg in args if arg.startswith("--on-active="))
    assert 97 <= int(delay.removeprefix("--on-active=").removesuffix("s")) <= 101
    assert "--unit=mcfleet-maint-rollback" in args
    # The copy on disk: /run, where the first script lived, is emptied by the reboot.
    assert args[-2:] == ["/bin/sh", "/var/lib/mcfleet/boot/mcfleet-maint-rollback.sh"]


def test_a_deadline_passed_during_the_reboot_rolls_back_at_once(tmp_path):
    args = run_boot_arm_script(tmp_path, time.time() - 30)
    assert "--on-active=1s" in args


def test_the_boot_unit_runs_the_arm_script_once_the_system_is_up():
    unit = boot_unit(DrillPaths("/run/mcfleet", "MCFLEET-MAINT"))
    assert "ExecStart=/bin/sh /var/lib/mcfleet/boot/mcfleet-maint-arm.sh" in unit
    assert "WantedBy=multi-user.target" in unit
