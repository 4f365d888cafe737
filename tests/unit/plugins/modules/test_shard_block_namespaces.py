"""mcfleet_shard_block against real iptables/ip6tables, memcached and conntrack in network namespaces.

(Needs root; tests/unit/plugins/modules/test_shard_block.py has the tests that do not.)

Every test gets fresh namespaces (own rule sets, own conntrack table), so the host's firewall
is never touched. systemd is not PID 1 on the test host, so the rollback timer is stood in for
by one that runs the real rollback script on demand; tests/integration_local/test_shard_block_systemd.py runs
the real systemd timer in a container.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mcfleet.fleet.plugins.module_utils.shard_block import (
    JUMP_COMMENT,
    CommandRunner,
    delete_conntrack_entries,
    validate_request,
)
from ansible_collections.mcfleet.fleet.plugins.modules import shard_block as shard_block_module

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("iptables"),
    reason="needs root, iproute2 and iptables to create network namespaces",
)

CHAIN = "MCFLEET-DRILL"
PORT = 11211
SERVER = "10.89.250.1"
BLOCKED_CLIENT = "10.89.250.2"
ALLOWED_CLIENT = "10.89.250.3"
JUMP_V4 = f'-A INPUT ! -i lo -p tcp -m tcp --dport {PORT} -m comment --comment "{JUMP_COMMENT}" -j {CHAIN}'


def sh(*argv, check=True, **kwargs):
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kwargs)


class Namespace:
    def __init__(self, name):
        self.name = name

    def run(self, *argv, check=True, **kwargs):
        return sh("ip", "netns", "exec", self.name, *argv, check=check, **kwargs)

    def rules(self, binary="iptables"):
        return self.run(binary, "-w", "-S").stdout.splitlines()

    def has_chain(self, binary="iptables", chain=CHAIN):
        return self.run(binary, "-w", "-S", chain, check=False).returncode == 0


def make_namespace():
    name = f"mcfleet-test-{uuid.uuid4().hex[:8]}"
    sh("ip", "netns", "add", name)
    namespace = Namespace(name)
    namespace.run("ip", "link", "set", "lo", "up")
    return namespace


@pytest.fixture
def shard_ns():
    namespace = make_namespace()
    yield namespace
    sh("ip", "netns", "del", namespace.name, check=False)


class ScriptRunningTimer:
    """Stands in for systemd: remembers the armed script and runs it, for real, on fire()."""

    def __init__(self, namespace):
        self.namespace = namespace
        self.armed = {}
        self.chain_existed_when_armed = []

    def __call__(self, *args, **kwargs):
        return self

    def is_armed(self, unit):
        return unit in self.armed

    def disarm(self, unit):
        return self.armed.pop(unit, None) is not None

    def arm(self, unit, seconds, script):
        assert seconds > 0
        self.chain_existed_when_armed.append(self.namespace.has_chain())
        self.armed[unit] = script

    def fire(self, unit):
        script = self.armed.pop(unit)
        # The rollback runs with no Python: only sh and the iptables binaries.
        return sh("/bin/sh", script, check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


class ModuleExit(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


@pytest.fixture
def timer(shard_ns, monkeypatch):
    stand_in = ScriptRunningTimer(shard_ns)
    monkeypatch.setattr(shard_block_module, "SystemdRollbackTimer", stand_in)
    return stand_in


@pytest.fixture
def run_module(shard_ns, timer, tmp_path, monkeypatch):
    def exit_json(self, **result):
        raise ModuleExit(result)

    def fail_json(self, msg, **result):
        raise ModuleExit({"failed": True, "msg": msg, **result})

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def run(check_mode=False, **params):
        args = {"netns": shard_ns.name, "state_dir": str(tmp_path / "run"), "_ansible_diff": True}
        args["_ansible_check_mode"] = check_mode
        args.update(params)
        with patch_module_args(args), pytest.raises(ModuleExit) as exited:
            shard_block_module.main()
        return exited.value.result

    return run


def block(run_module, **params):
    params.setdefault("rollback_after_s", 300)
    return run_module(**params)


def test_block_every_client_then_unblock(shard_ns, run_module, timer):
    started = time.time()
    result = block(run_module)
    assert result["changed"] is True
    # When the rules went in, for the drill's timeline: during the call, after the timer.
    assert started < result["applied_at"] < time.time()
    assert result["backend"] == "nf_tables"
    assert result["families"] == ["ipv4", "ipv6"]
    for binary in ("iptables", "ip6tables"):
        rules = shard_ns.rules(binary)
        jumps = [rule for rule in rules if rule.endswith(f"-j {CHAIN}")]
        assert len(jumps) == 1
        assert f"-A {CHAIN} -p tcp -m tcp --dport {PORT} -j REJECT --reject-with tcp-reset" in rules
    assert result["rules"]["ipv4"] == [
        JUMP_V4,
        f"-N {CHAIN}",
        f"-A {CHAIN} -p tcp -m tcp --dport {PORT} -j REJECT --reject-with tcp-reset",
    ]
    assert result["rollback_timer"]["armed"] is True
    assert result["rollback_timer"]["unit"] == "mcfleet-drill-" + shard_ns.name + "-rollback"
    assert result["rollback_timer"]["expires_at"]
    # The timer was armed while nothing was blocked yet.
    assert timer.chain_existed_when_armed == [False]

    again = block(run_module)
    assert again["changed"] is False
    assert again["applied_at"] is None
    assert again["rules"] == result["rules"]

    lifted = run_module(state="absent")
    assert lifted["changed"] is True
    assert result["applied_at"] < lifted["applied_at"] < time.time()
    assert lifted["families"] == []
    assert not timer.armed
    for binary in ("iptables", "ip6tables"):
        assert not shard_ns.has_chain(binary)
        assert not any(CHAIN in rule for rule in shard_ns.rules(binary))
    assert not os.path.exists(lifted["record"])
    assert run_module(state="absent")["changed"] is False


def test_check_mode_changes_nothing_and_diff_predicts_the_listing(shard_ns, run_module, timer):
    rules_before = shard_ns.rules()
    dry = block(run_module, check_mode=True, mode="drop", sources=["10.89.250.2"])
    assert dry["changed"] is True
    assert shard_ns.rules() == rules_before
    assert not timer.armed
    assert not os.path.exists(dry["record"])
    assert dry["diff"]["before"] == ""

    real = block(run_module, mode="drop", sources=["10.89.250.2"])
    # The planned listing is exactly what iptables prints afterwards.
    assert real["diff"] == dry["diff"]
    assert (
        f"ipv4: -A {CHAIN} -s 10.89.250.2/32 -p tcp -m tcp --dport {PORT} -j DROP\n" in real["diff"]["after"]
    )

    blocked = shard_ns.rules()
    dry_lift = run_module(state="absent", check_mode=True)
    assert dry_lift["changed"] is True
    assert dry_lift["diff"] == {"before": real["diff"]["after"], "after": ""}
    assert shard_ns.rules() == blocked
    assert timer.armed


def test_rules_it_did_not_create_are_untouched(shard_ns, run_module):
    # What a shard already has: an established-accept and the memcached role's own chain.
    shard_ns.run(
        "iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"
    )
    shard_ns.run("iptables", "-N", "MCFLEET-MEMCACHED")
    shard_ns.run("iptables", "-A", "MCFLEET-MEMCACHED", "-s", "10.89.213.0/24", "-j", "ACCEPT")
    memcached_comment = "mcfleet: only memcached clients reach memcached"
    shard_ns.run(
        *("iptables", "-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", str(PORT)),
        *("-m", "comment", "--comment", memcached_comment, "-j", "MCFLEET-MEMCACHED"),
    )
    shard_ns.run("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    shard_ns.run("ip6tables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    foreign_v4, foreign_v6 = shard_ns.rules(), shard_ns.rules("ip6tables")

    block(run_module)
    input_v4 = [rule for rule in shard_ns.rules() if rule.startswith("-A INPUT")]
    # Our jump comes before the established-accept, so existing connections are caught too.
    assert input_v4[0] == JUMP_V4
    assert [rule for rule in shard_ns.rules() if CHAIN not in rule] == foreign_v4

    run_module(state="absent")
    assert shard_ns.rules() == foreign_v4
    assert shard_ns.rules("ip6tables") == foreign_v6


def test_sources_only_then_replaced_by_another_mode_and_sources(shard_ns, run_module):
    first = block(run_module, sources=["10.89.250.2", "10.89.213.0/24"])
    assert first["families"] == ["ipv4"]
    assert not shard_ns.has_chain("ip6tables")
    assert first["rules"]["ipv4"][2:] == [
        f"-A {CHAIN} -s 10.89.213.0/24 -p tcp -m tcp --dport {PORT} -j REJECT --reject-with tcp-reset",
        f"-A {CHAIN} -s 10.89.250.2/32 -p tcp -m tcp --dport {PORT} -j REJECT --reject-with tcp-reset",
    ]
    # Order and duplicates of the sources do not matter.
    assert block(run_module, sources=["10.89.213.0/24", "10.89.250.2", "10.89.250.2/32"])["changed"] is False

    second = block(run_module, mode="drop", sources=["10.89.250.3", "fd00:89::3"])
    assert second["changed"] is True
    assert second["families"] == ["ipv4", "ipv6"]
    assert second["rules"]["ipv4"][2:] == [
        f"-A {CHAIN} -s 10.89.250.3/32 -p tcp -m tcp --dport {PORT} -j DROP"
    ]
    assert second["rules"]["ipv6"][2:] == [
        f"-A {CHAIN} -s fd00:89::3/128 -p tcp -m tcp --dport {PORT} -j DROP"
    ]
    assert len([rule for rule in shard_ns.rules() if rule.endswith(f"-j {CHAIN}")]) == 1

    third = block(run_module, mode="drop", sources=["10.89.250.3"], port=11311)
    assert third["families"] == ["ipv4"]
    assert not shard_ns.has_chain("ip6tables")
    assert third["rules"]["ipv4"][0] == JUMP_V4.replace(str(PORT), "11311")


def test_a_jump_pushed_down_is_moved_back_to_the_top(shard_ns, run_module):
    block(run_module)
    shard_ns.run(
        "iptables", "-I", "INPUT", "1", "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT"
    )
    result = block(run_module)
    assert result["changed"] is True
    input_rules = [rule for rule in shard_ns.rules() if rule.startswith("-A INPUT")]
    assert input_rules == [JUMP_V4, "-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT"]


def test_rollback_script_lifts_the_block_without_python(shard_ns, run_module, timer):
    shard_ns.run("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    foreign = shard_ns.rules()
    result = block(run_module, sources=["10.89.250.2", "fd00:89::2"])
    unit = result["rollback_timer"]["unit"]
    with open(result["record"]) as stream:
        record = json.load(stream)
    assert record["backend"] == "nf_tables" and record["timer_unit"] == unit

    fired = timer.fire(unit)
    assert fired.returncode == 0, fired.stderr
    assert shard_ns.rules() == foreign
    assert not shard_ns.has_chain("ip6tables")
    assert not os.path.exists(result["record"])
    # The controller coming back later finds nothing to do.
    assert run_module(state="absent")["changed"] is False


def test_a_lost_timer_is_rearmed(shard_ns, run_module, timer):
    result = block(run_module)
    timer.disarm(result["rollback_timer"]["unit"])
    again = block(run_module)
    assert again["changed"] is True
    assert again["rollback_timer"]["armed"] is True
    assert timer.armed


def test_legacy_backend_is_recorded_and_used_to_lift(shard_ns, run_module):
    if not shutil.which("iptables-legacy"):
        pytest.skip("iptables-legacy is not installed")
    result = block(run_module, backend="legacy")
    assert result["backend"] == "legacy"
    assert shard_ns.has_chain("iptables-legacy")
    assert not shard_ns.has_chain("iptables-nft")
    # No backend given: the record decides, so the legacy rule set is cleaned.
    lifted = run_module(state="absent")
    assert lifted["backend"] == "legacy" and lifted["changed"] is True
    assert not shard_ns.has_chain("iptables-legacy")
    assert not any(CHAIN in rule for rule in shard_ns.rules("iptables-legacy"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"rollback_after_s": 0}, "rollback_after_s=0"),
        ({"rollback_after_s": -5}, "rollback_after_s=-5"),
        ({"port": 0}, "port=0"),
        ({"port": 70000}, "port=70000"),
        ({"port": 22}, "port=22"),
        ({"sources": ["mw1001"]}, "sources[0]='mw1001'"),
        ({"sources": ["10.89.250.2", "10.89.250.1/24"]}, "sources[1]='10.89.250.1/24'"),
        ({"sources": ["127.0.0.1"]}, "sources[0]='127.0.0.1'"),
        ({"chain": "INPUT"}, "chain='INPUT'"),
        ({"chain": "MCFLEET-MEMCACHED"}, "chain='MCFLEET-MEMCACHED'"),
        ({"chain": "MCFLEET-DRILL-" + "X" * 20}, "chain='MCFLEET-DRILL-XXXX"),
        ({"mode": "explode"}, "mode"),
        ({"flush_conntrack": True, "netns": "bad name!"}, "netns='bad name!'"),
    ],
)
def test_bad_input_fails_clearly_and_blocks_nothing(shard_ns, run_module, timer, params, message):
    before = shard_ns.rules()
    result = block(run_module, **params)
    assert result.get("failed") is True
    assert message in result["msg"]
    assert shard_ns.rules() == before
    assert not timer.armed


def test_missing_rollback_after_is_refused(shard_ns, run_module):
    result = run_module()
    assert result.get("failed") is True
    assert "rollback_after_s" in result["msg"]
    assert not shard_ns.has_chain()


# --- real traffic: memcached in one namespace, clients in another ----------------------


@pytest.fixture
def memcached_pair(shard_ns):
    if not shutil.which("memcached"):
        pytest.skip("memcached is not installed")
    client_ns = make_namespace()
    veth = f"mct{uuid.uuid4().hex[:8]}"
    try:
        sh(
            "ip",
            "link",
            "add",
            veth,
            "netns",
            shard_ns.name,
            "type",
            "veth",
            "peer",
            "name",
            "client0",
            "netns",
            client_ns.name,
        )
        shard_ns.run("ip", "addr", "add", f"{SERVER}/29", "dev", veth)
        shard_ns.run("ip", "link", "set", veth, "up")
        for address in (BLOCKED_CLIENT, ALLOWED_CLIENT):
            client_ns.run("ip", "addr", "add", f"{address}/29", "dev", "client0")
        client_ns.run("ip", "link", "set", "client0", "up")
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                shard_ns.name,
                "memcached",
                "-u",
                "nobody",
                "-l",
                SERVER,
                "-p",
                str(PORT),
                "-U",
                "0",
            ]
        )
        try:
            wait_until_served(client_ns)
            yield client_ns
        finally:
            server.terminate()
            server.wait(timeout=10)
    finally:
        sh("ip", "netns", "del", client_ns.name, check=False)


PROBE = f"""
import socket, sys
sock = socket.socket()
sock.settimeout(float(sys.argv[2]))
sock.bind((sys.argv[1], 0))
try:
    sock.connect(("{SERVER}", {PORT}))
    sock.sendall(b"version\\r\\n")
    reply = sock.recv(100)
    print("served" if reply.startswith(b"VERSION ") else "other:" + reply.decode())
except ConnectionRefusedError:
    print("refused")
except (socket.timeout, TimeoutError):
    print("timeout")
"""


def probe(client_ns, source, timeout=1.0):
    """What a client at `source` gets from memcached: served, refused or timeout."""
    return client_ns.run(sys.executable, "-c", PROBE, source, str(timeout)).stdout.strip()


def wait_until_served(client_ns):
    deadline = time.monotonic() + 10
    while probe(client_ns, ALLOWED_CLIENT) != "served":
        assert time.monotonic() < deadline, "memcached did not come up in the namespace"
        time.sleep(0.1)


def test_memcached_refuses_blocked_client_and_serves_the_others(shard_ns, memcached_pair, run_module):
    client_ns = memcached_pair
    assert probe(client_ns, BLOCKED_CLIENT) == "served"

    block(run_module, sources=[BLOCKED_CLIENT], mode="reject")
    assert probe(client_ns, BLOCKED_CLIENT) == "refused"
    assert probe(client_ns, ALLOWED_CLIENT) == "served"

    block(run_module, sources=[BLOCKED_CLIENT], mode="drop")
    started = time.monotonic()
    assert probe(client_ns, BLOCKED_CLIENT, timeout=0.5) == "timeout"
    assert time.monotonic() - started >= 0.5
    assert probe(client_ns, ALLOWED_CLIENT) == "served"

    block(run_module, mode="reject")
    assert probe(client_ns, ALLOWED_CLIENT) == "refused"

    run_module(state="absent")
    assert probe(client_ns, BLOCKED_CLIENT) == "served"
    assert probe(client_ns, ALLOWED_CLIENT) == "served"


HOLD_CONNECTION = f"""
import socket, sys, time
sock = socket.create_connection(("{SERVER}", {PORT}), source_address=(sys.argv[1], 0))
sock.sendall(b"version\\r\\n")
print(sock.recv(100).decode().strip(), flush=True)
sys.stdin.readline()
try:
    sock.sendall(b"version\\r\\n")
    reply = sock.recv(100)
    print("served" if reply else "closed", flush=True)
except ConnectionResetError:
    print("reset", flush=True)
"""


def tracked_flows(shard_ns):
    listing = shard_ns.run("conntrack", "-L", "-p", "tcp", "--dport", str(PORT), check=False)
    return [line for line in listing.stdout.splitlines() if "ESTABLISHED" in line]


def test_conntrack_entries_of_established_router_connections_are_deleted(
    shard_ns, memcached_pair, run_module
):
    if not shutil.which("conntrack"):
        pytest.skip("conntrack is not installed")
    client_ns = memcached_pair
    # An established-accept is what makes a shard track connections in the first place.
    shard_ns.run(
        "iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"
    )
    router = subprocess.Popen(
        ["ip", "netns", "exec", client_ns.name, sys.executable, "-c", HOLD_CONNECTION, BLOCKED_CLIENT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert router.stdout.readline().startswith("VERSION ")
        assert len(tracked_flows(shard_ns)) == 1

        result = block(run_module, sources=[BLOCKED_CLIENT], flush_conntrack=True)
        assert result["conntrack_deleted"] == 1
        assert tracked_flows(shard_ns) == []

        # The router's persistent connection is cut, not served.
        router.stdin.write("\n")
        router.stdin.flush()
        assert router.stdout.readline().strip() == "reset"
    finally:
        router.kill()
        router.wait()


def test_conntrack_with_nothing_to_delete_counts_zero(shard_ns):
    if not shutil.which("conntrack"):
        pytest.skip("conntrack is not installed")

    def run(argv, data):
        done = sh(*argv, check=False)
        return done.returncode, done.stdout, done.stderr

    runner = CommandRunner(run, ["ip", "netns", "exec", shard_ns.name])
    request = validate_request(PORT, "reject", [])
    assert delete_conntrack_entries(runner, "conntrack", request, {"ipv4", "ipv6"}) == 0


def test_missing_conntrack_is_a_clear_error_and_blocks_nothing(shard_ns, run_module, monkeypatch):
    real_get_bin_path = basic.AnsibleModule.get_bin_path

    def without_conntrack(self, name, *args, **kwargs):
        return None if name == "conntrack" else real_get_bin_path(self, name, *args, **kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", without_conntrack)
    result = block(run_module, flush_conntrack=True)
    assert result.get("failed") is True
    assert "conntrack tool is not installed" in result["msg"]
    assert not shard_ns.has_chain()


LOOPBACK_CLIENT = f"""
import socket
listener = socket.create_server(("127.0.0.1", {PORT}))
client = socket.create_connection(("127.0.0.1", {PORT}), timeout=1)
print("open")
"""


def test_loopback_stays_open_and_ssh_is_never_matched(shard_ns, run_module):
    block(run_module)
    # A blocked port still answers on loopback: local health checks keep working.
    assert shard_ns.run(sys.executable, "-c", LOOPBACK_CLIENT).stdout.strip() == "open"
    assert not any("--dport 22 " in rule for rule in shard_ns.rules() + shard_ns.rules("ip6tables"))
