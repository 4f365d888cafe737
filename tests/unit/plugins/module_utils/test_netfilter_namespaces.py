"""The client firewall and the drill's block together, on real iptables/ip6tables and memcached.

memcached runs in one network namespace (the shard), clients in another joined by a veth
pair, so the host's own firewall is never touched. Both modules run as Ansible runs them
(main() with module arguments). The rollback timer is stood in for (systemd is not PID 1
here); the drill's own tests cover it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from typing import ClassVar

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter import order_violations, parse_ruleset
from ansible_collections.mcfleet.fleet.plugins.modules import client_firewall as client_firewall_module
from ansible_collections.mcfleet.fleet.plugins.modules import shard_block as shard_block_module

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("ip", "iptables", "ip6tables", "memcached")),
    reason="needs root, iproute2, iptables/ip6tables and memcached to run memcached in network namespaces",
)

PORT, TLS_PORT = 11211, 11214
FIREWALL_CHAIN, DRILL_CHAIN = "MCFLEET-MEMCACHED", "MCFLEET-DRILL"
SERVER, SERVER6 = "10.89.251.1", "fd00:89:251::1"
ROUTERS, ROUTERS6 = "10.89.251.8/29", "fd00:89:251::/124"
ROUTER, ROUTER6 = "10.89.251.10", "fd00:89:251::a"
OUTSIDER, OUTSIDER6 = "10.89.251.100", "fd00:89:251::100"


def sh(*argv, check=True, **kwargs):
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kwargs)


class Namespace:
    def __init__(self):
        self.name = f"mcfleet-nf-{uuid.uuid4().hex[:8]}"
        sh("ip", "netns", "add", self.name)
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *argv, check=True, **kwargs):
        return sh("ip", "netns", "exec", self.name, *argv, check=check, **kwargs)

    def input_rules(self, binary="iptables"):
        return parse_ruleset(self.run(binary, "-w", "-S").stdout).hook_rules()

    def delete(self):
        sh("ip", "netns", "del", self.name, check=False)


PROBE = """
import socket, sys
source, server, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
sock = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET)
sock.settimeout(2)
sock.bind((source, 0))
try:
    sock.connect((server, port))
    sock.sendall(b"version\\r\\n")
    print("served" if sock.recv(100).startswith(b"VERSION ") else "other")
except ConnectionRefusedError:
    print("refused")
except ConnectionResetError:
    print("reset")
except (socket.timeout, TimeoutError):
    print("timeout")
"""


class Lab:
    """memcached on PORT in the shard namespace; routers and an outsider in the client one."""

    def __init__(self, shard, clients):
        self.shard, self.clients = shard, clients

    def probe(self, source, port=PORT):
        server = SERVER6 if ":" in source else SERVER
        return self.clients.run(sys.executable, "-c", PROBE, source, server, str(port)).stdout.strip()


@pytest.fixture
def lab():
    shard, clients = Namespace(), Namespace()
    veth = f"mcnf{uuid.uuid4().hex[:8]}"
    server = None
    try:
        sh("ip", "link", "add", veth, "netns", shard.name, "type", "veth", "peer", "name", "c0")
        sh("ip", "link", "set", "c0", "netns", clients.name)
        shard.run("ip", "addr", "add", f"{SERVER}/24", "dev", veth)
        shard.run("ip", "-6", "addr", "add", f"{SERVER6}/64", "dev", veth, "nodad")
        shard.run("ip", "link", "set", veth, "up")
        for address in (ROUTER, OUTSIDER):
            clients.run("ip", "addr", "add", f"{address}/24", "dev", "c0")
        for address in (ROUTER6, OUTSIDER6):
            clients.run("ip", "-6", "addr", "add", f"{address}/64", "dev", "c0", "nodad")
        clients.run("ip", "link", "set", "c0", "up")
        # No -l: memcached listens on every address of the namespace, IPv4 and IPv6.
        server = subprocess.Popen(
            ["ip", "netns", "exec", shard.name, "memcached", "-u", "nobody", "-p", str(PORT), "-U", "0"]
        )
        lab = Lab(shard, clients)
        deadline = time.monotonic() + 10
        while not (lab.probe(ROUTER) == lab.probe(ROUTER6) == "served"):
            assert time.monotonic() < deadline, "memcached did not come up in the namespace"
            time.sleep(0.1)
        yield lab
    finally:
        if server:
            server.terminate()
            server.wait(timeout=10)
        clients.delete()
        shard.delete()


class StandInTimer:
    """The drill's rollback timer without systemd: armed and disarmed, never fired here."""

    armed: ClassVar[set] = set()

    def __init__(self, *args, **kwargs):
        pass

    def is_armed(self, unit):
        return unit in self.armed

    def disarm(self, unit):
        was = unit in self.armed
        self.armed.discard(unit)
        return was

    def arm(self, unit, seconds, script):
        self.armed.add(unit)


class ModuleExit(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


@pytest.fixture
def modules(lab, tmp_path, monkeypatch):
    def exit_json(self, **result):
        raise ModuleExit(result)

    def fail_json(self, msg, **result):
        raise ModuleExit({"failed": True, "msg": msg, **result})

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(StandInTimer, "armed", set())
    monkeypatch.setattr(shard_block_module, "SystemdRollbackTimer", StandInTimer)

    def run(module, check_mode=False, may_fail=False, **params):
        args = {"netns": lab.shard.name, "_ansible_diff": True, "_ansible_check_mode": check_mode, **params}
        with patch_module_args(args), pytest.raises(ModuleExit) as exited:
            module.main()
        result = exited.value.result
        assert may_fail or not result.get("failed"), result.get("msg")
        return result

    def firewall(**params):
        params.setdefault("ports", [PORT])
        params.setdefault("client_networks", [ROUTERS, ROUTERS6])
        return run(client_firewall_module, **params)

    def block(**params):
        params.setdefault("rollback_after_s", 300)
        params.setdefault("state_dir", str(tmp_path / "run"))
        return run(shard_block_module, **params)

    return firewall, block


def targets(lab, binary="iptables"):
    return [rule.split()[-1] for rule in lab.shard.input_rules(binary)]


def listings(lab):
    return lab.shard.run("iptables", "-w", "-S").stdout, lab.shard.run("ip6tables", "-w", "-S").stdout


def assert_contract(lab):
    for binary in ("iptables", "ip6tables"):
        assert order_violations(lab.shard.input_rules(binary), {FIREWALL_CHAIN}) == [], binary


def test_the_block_holds_while_the_firewall_converges_and_changes_its_ports(lab, modules):
    firewall, block = modules
    assert firewall()["changed"] is True
    assert lab.probe(ROUTER) == "served"
    assert lab.probe(OUTSIDER) == "refused"

    # The drill cuts the routers off the shard: their network is the one the firewall admits.
    block(sources=[ROUTERS], mode="reject")
    assert lab.probe(ROUTER) == "refused"
    assert targets(lab) == [DRILL_CHAIN, FIREWALL_CHAIN]

    # The role converges again during the drill: unchanged, then with the TLS port added.
    assert firewall()["changed"] is False
    assert lab.probe(ROUTER) == "refused"
    changed = firewall(ports=[PORT, TLS_PORT])
    assert changed["changed"] is True
    assert "-I INPUT 2 " in changed["script"], "the new jump goes right after the drill's"
    assert f"--dports {PORT},{TLS_PORT} " in changed["rules"][0]
    assert targets(lab) == [DRILL_CHAIN, FIREWALL_CHAIN]
    assert_contract(lab)
    # Reset, not accepted: the block's REJECT answers before the firewall's ACCEPT is reached.
    assert lab.probe(ROUTER) == "refused"
    assert lab.probe(OUTSIDER) == "refused"

    # The drill ends: the routers get through again, the outsider still does not.
    assert block(state="absent")["changed"] is True
    assert targets(lab) == [FIREWALL_CHAIN]
    assert lab.probe(ROUTER) == "served"
    assert lab.probe(OUTSIDER) == "refused"


def test_a_firewall_jump_found_above_the_block_is_moved_below_it(lab, modules):
    firewall, block = modules
    block(sources=[ROUTERS, ROUTERS6])
    firewall()
    assert lab.probe(ROUTER) == "refused"
    # What the firewall did before the ordering contract: its jump re-inserted at the top.
    jump = lab.shard.input_rules()[1]
    lab.shard.run("sh", "-c", "iptables -w -D" + jump[2:])
    lab.shard.run("sh", "-c", "iptables -w -I INPUT 1 " + jump[len("-A INPUT ") :])
    assert targets(lab) == [FIREWALL_CHAIN, DRILL_CHAIN]
    assert lab.probe(ROUTER) == "served", "the bug: the firewall's ACCEPT bypasses the block"

    moved = firewall()
    assert moved["changed"] is True
    assert targets(lab) == [DRILL_CHAIN, FIREWALL_CHAIN]
    assert lab.probe(ROUTER) == "refused"
    assert firewall()["changed"] is False
    assert block(sources=[ROUTERS, ROUTERS6])["changed"] is False

    block(state="absent")
    assert lab.probe(ROUTER) == "served"


def test_ipv6_clients_are_admitted_and_the_rest_reset_and_a_block_holds_over_ipv6(lab, modules):
    firewall, block = modules
    result = firewall()
    assert result["rules_ipv6"][2:] == [
        f"-A {FIREWALL_CHAIN} -i lo -j ACCEPT",
        f"-A {FIREWALL_CHAIN} -s {ROUTERS6} -j ACCEPT",
        f"-A {FIREWALL_CHAIN} -p tcp -j REJECT --reject-with tcp-reset",
    ]
    assert lab.probe(ROUTER6) == "served"
    assert lab.probe(OUTSIDER6) == "refused"
    assert lab.probe(ROUTER) == "served"

    block(sources=[ROUTERS6])
    assert lab.probe(ROUTER6) == "refused"
    assert lab.probe(ROUTER) == "served", "an IPv6 block leaves IPv4 alone"
    firewall(ports=[PORT, TLS_PORT])
    assert targets(lab, "ip6tables") == [DRILL_CHAIN, FIREWALL_CHAIN]
    assert_contract(lab)
    assert lab.probe(ROUTER6) == "refused"

    block(state="absent")
    assert lab.probe(ROUTER6) == "served"
    # Only IPv4 routers: IPv6 keeps loopback and resets everyone else.
    firewall(client_networks=[ROUTERS])
    assert lab.probe(ROUTER6) == "refused"
    assert lab.probe(ROUTER) == "served"
    removed = firewall(state="absent")
    assert removed["changed"] is True and removed["rules"] == removed["rules_ipv6"] == []
    assert lab.probe(OUTSIDER6) == lab.probe(OUTSIDER) == "served"


def test_check_mode_changes_nothing_and_its_diff_is_what_happens(lab, modules):
    firewall, block = modules
    block(sources=[ROUTERS])
    before = listings(lab)
    dry = firewall(check_mode=True)
    assert dry["changed"] is True
    assert listings(lab) == before
    real = firewall()
    assert real["diff"] == dry["diff"]
    assert real["script"] == dry["script"] and real["script_ipv6"] == dry["script_ipv6"]
    assert firewall(check_mode=True)["changed"] is False


def test_bad_input_is_refused_before_the_host_is_touched(lab, modules):
    firewall, _shard_block = modules
    before = listings(lab)
    for params, message in [
        ({"client_networks": [ROUTERS, "10.89.251.0/33"]}, "client_networks[1]='10.89.251.0/33'"),
        ({"client_networks": ["mw1001"]}, "client_networks[0]='mw1001'"),
        ({"chain": "MCFLEET-DRILL-X"}, "chain='MCFLEET-DRILL-X'"),
        ({"ports": [70000]}, "70000"),
        # iptables would list a quote back differently, so every run would "change" the rule.
        ({"comment": "datacentres' routers"}, 'comment="datacentres\' routers"'),
    ]:
        failed = firewall(may_fail=True, **params)
        assert failed.get("failed") is True
        assert message in failed["msg"]
    assert listings(lab) == before


def test_a_chain_of_its_own_with_its_own_comment_converges_once(lab, modules):
    # The proxies' firewall (roles/proxy_firewall): its chain and comment read back as written.
    firewall, _block = modules
    proxy = {
        "chain": "MCFLEET-PROXY",
        "comment": "mcfleet: only other datacentres routers and proxies reach this proxy",
    }
    assert firewall(**proxy)["changed"] is True
    assert firewall(**proxy)["changed"] is False
    assert lab.probe(ROUTER) == "served"
    assert lab.probe(OUTSIDER) == "refused"
