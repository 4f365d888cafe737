"""The rendered routelib config on the real memcached proxy (Debian trixie, 1.6.38).

One container (host network, so everything stays on loopback addresses 127.78.N.x)
runs two datacentres: eqiad with 3 shards, a gutter and a router; codfw with a shard,
a gutter and primary/secondary proxies. The client is pymemcache on the host.
"""

import itertools
import json
import os
import shutil
import socket
import subprocess
import time

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils import render_memcached_proxy
from ansible_collections.mcfleet.fleet.plugins.module_utils.failover_verify import FailoverVerifier
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import MemcacheClient
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import default_plan
from ansible_collections.mcfleet.fleet.plugins.module_utils.traffic import run as run_traffic
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import REPO
from pymemcache.client.base import Client

IMAGE = "localhost/mcfleet-debian:trixie"
CONTAINER = f"mcfleet-test-proxylive-{os.getpid()}"
NET = f"127.78.{os.getpid() % 250 + 1}"
GUTTER_TTL_S = 3
HOSTS = {
    "mc1001": ("memcached_main", "eqiad", f"{NET}.11"),
    "mc1002": ("memcached_main", "eqiad", f"{NET}.12"),
    "mc1003": ("memcached_main", "eqiad", f"{NET}.13"),
    "mc-gp1001": ("memcached_gutter", "eqiad", f"{NET}.14"),
    "mw1001": ("routers", "eqiad", f"{NET}.15"),
    "mc2001": ("memcached_main", "codfw", f"{NET}.21"),
    "mc-gp2001": ("memcached_gutter", "codfw", f"{NET}.24"),
    "mwproxy2001": ("proxies_primary", "codfw", f"{NET}.26"),
    "mwproxy2002": ("proxies_secondary", "codfw", f"{NET}.27"),
}
SHARDS = ("mc1001", "mc1002", "mc1003")


def _podman_usable():
    if shutil.which("podman") is None:
        return False
    return (
        subprocess.run(["podman", "image", "exists", IMAGE], capture_output=True, check=False).returncode == 0
    )


pytestmark = pytest.mark.skipif(not _podman_usable(), reason=f"needs podman and {IMAGE} (lab/build-image.sh)")


def podman_exec(*args, stdin=None, detach=False):
    command = ["podman", "exec", *(["-d"] if detach else []), *(["-i"] if stdin else []), CONTAINER, *args]
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, check=True, timeout=300
    ).stdout


APT_INSTALL = "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq"
LIBRARY = "/tmp/mcfleet-routes.lua"
ROUTE_LIBRARY = REPO / "roles" / "memcached_proxy" / "files" / "routes.lua"


def start_server(model, host):
    if host not in model["routers"]:
        podman_exec(*backend_command(host).split(), detach=True)
        return
    config = f"/tmp/{host}.lua"
    podman_exec("sh", "-c", f"cat > {config}", stdin=render_memcached_proxy.render_config_text(model, host))
    options = render_memcached_proxy.command_line_options(model, host, config, LIBRARY)
    podman_exec("memcached", "-u", "nobody", "-m", "16", *options, detach=True)


def listening_ports(model, host):
    router = model["routers"].get(host)
    if router is None:
        return [model["hosts"][host]["port"]]
    return [port for port in (router["port"], router["cross_dc_port"]) if port is not None]


def backend_command(host):
    return f"memcached -u nobody -l {HOSTS[host][2]} -p 11211 -m 16"


def wait_for_port(address, port, up=True, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((address, port), timeout=0.2).close()
            if up:
                return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise AssertionError(f"{address}:{port} did not go {'up' if up else 'down'} within {timeout_s}s")


def raw(address, port, request):
    """The whole reply to one request: read until it is complete, not for a fixed time (on a
    loaded machine a multi-key reply may come in pieces). What came by the timeout otherwise."""
    reply = b""
    with socket.create_connection((address, port), timeout=2) as conn:
        conn.sendall(request)
        while not reply_complete(reply):
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                break
            reply += chunk
    return reply


def reply_complete(reply):
    """Whether `reply` is a whole answer: a text get's ends with END, a meta get's value
    (VA <size>) follows its line, any other answer (HD, EN, END, an error) is one line."""
    line, crlf, rest = reply.partition(b"\r\n")
    if not crlf:
        return False
    if line.startswith(b"VALUE "):
        return reply.endswith(b"\r\nEND\r\n")
    if line.startswith(b"VA "):
        return len(rest) >= int(line.split()[1]) + 2
    return True


@pytest.fixture(scope="module")
def fleet():
    groups, hostvars = {}, {}
    for host, (group, datacentre, address) in HOSTS.items():
        groups.setdefault(group, []).append(host)
        hostvars[host] = {
            "mcfleet_address": address,
            "mcfleet_datacentre": datacentre,
            "mcfleet_router_engine": "memcached_proxy",
            "mcfleet_gutter_ttl_s": GUTTER_TTL_S,
            "mcfleet_cross_dc_tls": False,
            "mcfleet_tko": {"timeouts_until_tko": 3, "probe_timeout_initial_ms": 3000},
        }
    model = build_topology(groups, hostvars)
    subprocess.run(
        ["podman", "run", "-d", "--network", "host", "--name", CONTAINER, IMAGE, "sleep", "infinity"],
        check=True,
        capture_output=True,
    )
    try:
        podman_exec("sh", "-c", f"apt-get update -qq && {APT_INSTALL} memcached")
        podman_exec("sh", "-c", f"cat > {LIBRARY}", stdin=ROUTE_LIBRARY.read_text())
        # The routers' failover journal (the memcached_proxy role creates it for its user).
        podman_exec("install", "-d", "-o", "nobody", render_memcached_proxy.JOURNAL_DIRECTORY)
        # Backends first, then proxies, then the router, so no first connection fails
        # (a failed backend is only retried after the probe delay).
        for pools in (
            ("memcached_main", "memcached_gutter"),
            ("proxies_primary", "proxies_secondary"),
            ("routers",),
        ):
            started = [host for host, (group, _datacentre, _address) in HOSTS.items() if group in pools]
            for host in started:
                start_server(model, host)
            for host in started:
                for port in listening_ports(model, host):
                    wait_for_port(HOSTS[host][2], port)
        yield model
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", CONTAINER], capture_output=True, check=False)


def client(host, port=11211):
    return Client((HOSTS[host][2], port), connect_timeout=3, timeout=3)


def test_keys_are_sharded_and_stored_without_the_routing_prefix(fleet):
    router, shards, gutter = client("mw1001", 11213), {h: client(h) for h in SHARDS}, client("mc-gp1001")
    keys = [f"spread{i}" for i in range(300)]
    for key in keys:
        assert router.set(f"/eqiad/mw/{key}", b"v", noreply=False)
    held = {host: sum(1 for key in keys if shard.get(key) == b"v") for host, shard in shards.items()}
    assert sum(held.values()) == len(keys)
    assert all(count > 0 for count in held.values()), held
    assert not any(shard.get(f"/eqiad/mw/{keys[0]}") for shard in shards.values())
    assert gutter.get(keys[0]) is None
    # A key without routing prefix takes the local route: the same item.
    assert router.get(keys[0]) == b"v"


def test_prefixed_keys_read_through_the_proxy_only_with_meta_get(fleet):
    """The 1.6.38 proxy's limitation, and how our clients read around it.

    route_mcfleet_prefix strips /eqiad/mw/ with r:ltrimkey(), so the shard stores `echo`
    (as mcrouter would) and its text reply names `echo` too: the proxy forwards it as is,
    and its Lua API cannot rewrite it (mcrouter answers with the key asked for). Clients
    that match text replies by key, pymemcache and PHP's among them, cannot read prefixed
    keys through it. A meta get reply names no key unless `k` is asked, so mg reads them.
    """
    address = HOSTS["mw1001"][2]
    text = client("mw1001", 11213)
    assert text.set("/eqiad/mw/echo", b"e", noreply=False)
    assert text.set("/eqiad/mw/echo2", b"ee", noreply=False)

    assert raw(address, 11213, b"get /eqiad/mw/echo\r\n") == b"VALUE echo 0 1\r\ne\r\nEND\r\n"
    assert raw(address, 11213, b"gets /eqiad/mw/echo\r\n").startswith(b"VALUE echo 0 1 ")
    assert raw(address, 11213, b"get /eqiad/mw/echo /eqiad/mw/echo2\r\n") == (
        b"VALUE echo 0 1\r\ne\r\nVALUE echo2 0 2\r\nee\r\nEND\r\n"
    )
    with pytest.raises(KeyError):
        text.get("/eqiad/mw/echo")

    assert raw(address, 11213, b"mg /eqiad/mw/echo v\r\n") == b"VA 1\r\ne\r\n"
    assert raw(address, 11213, b"mg /eqiad/mw/echo v k\r\n") == b"VA 1 kecho\r\ne\r\n"
    with MemcacheClient(address, 11213, read_protocol="meta") as meta:
        assert meta.get_many(["/eqiad/mw/echo", "/eqiad/mw/nothing", "/eqiad/mw/echo2"]) == {
            "/eqiad/mw/echo": b"e",
            "/eqiad/mw/echo2": b"ee",
        }
        value, cas = meta.gets("/eqiad/mw/echo")
        assert value == b"e"
        shard_cas = [int(c.gets("echo")[1]) for c in map(client, SHARDS) if c.get("echo") is not None]
        assert shard_cas == [cas]


@pytest.mark.parametrize(("engine", "outcome_after_a_set"), [("memcached_proxy", "ok"), ("mcrouter", "miss")])
def test_traffic_reads_prefixed_keys_through_the_proxy_with_its_engines_protocol(
    fleet, tmp_path, engine, outcome_after_a_set
):
    """mcfleet_traffic told the proxy's engine reads with mg and hits; with mcrouter's text
    get every read of a key it has written comes back as a miss (the reply names another key)."""
    router = {"address": HOSTS["mw1001"][2], "port": 11213, "engine": engine}
    plan = default_plan(
        router=router,
        run_id=f"engine-{engine}",
        key_count=10,
        set_ratio=0.5,
        rate_per_s=400,
        max_requests=400,
        max_duration_s=5,
        timeline=str(tmp_path / "traffic.jsonl"),
        seed=3,
    )
    summary = run_traffic(plan)
    assert summary["client_errors"] == 0
    written, outcomes = set(), []
    with open(summary["timeline"]) as timeline:
        for line in timeline:
            request = json.loads(line)
            if request["kind"] != "req":
                continue
            if request["op"] == "set":
                written.add(request["k"])
            elif request["k"] in written:
                outcomes.append(request["r"])
    assert len(outcomes) > 50
    assert set(outcomes) == {outcome_after_a_set}


def test_failover_verifier_reads_its_prefixed_canaries_through_the_proxy(fleet):
    """The verifier takes the read protocol from the router's engine in the model."""
    eqiad = fleet["datacentres"]["eqiad"]
    verifier = FailoverVerifier(
        router={"host": "mw1001", **fleet["routers"]["mw1001"]},
        shards=eqiad["main"],
        gutter=eqiad["gutter"],
        route_prefix=eqiad["route_prefix"],
    )
    try:
        result, state = verifier.before(canaries=30)
    finally:
        verifier.close()
    assert result["ok"], result["violations"]
    assert state["canaries"][0]["key"].startswith("mcfleet-canary-")


def test_broadcast_and_remote_prefixes(fleet):
    router, shards, codfw = client("mw1001", 11213), [client(h) for h in SHARDS], client("mc2001")
    assert router.set("/*/mw-wan/everywhere", b"w", noreply=False)
    assert [shard.get("everywhere") for shard in shards].count(b"w") == 1
    wait_until(lambda: codfw.get("everywhere") == b"w")
    assert router.set("/eqiad/mw-wan/here", b"h", noreply=False)
    assert [shard.get("here") for shard in shards].count(b"h") == 1
    assert router.set("/codfw/mw/there", b"t", noreply=False)
    assert codfw.get("there") == b"t"
    # Fire-and-forget to a remote datacentre answers NOT_STORED at once, like AllAsyncRoute.
    assert router.set("/codfw/mw-wan/async", b"a", noreply=False) is False
    wait_until(lambda: codfw.get("async") == b"a")
    assert router.delete("/*/mw-wan/everywhere", noreply=False)
    assert [shard.get("everywhere") for shard in shards] == [None, None, None]
    wait_until(lambda: codfw.get("everywhere") is None)


def wait_until(condition, timeout_s=5):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_failed_shard_fails_over_to_the_gutter_with_the_gutter_ttl(fleet):
    router, gutter = client("mw1001", 11213), client("mc-gp1001")
    victim = "mc1001"
    keys = [f"failover{i}" for i in range(300)]
    for key in keys:
        router.set(f"/eqiad/mw/{key}", b"old", noreply=False)
    victim_keys = [key for key in keys if client(victim).get(key) == b"old"]
    assert victim_keys
    pid = podman_exec("pgrep", "-f", "-x", backend_command(victim)).split()[0]
    podman_exec("kill", pid)
    wait_for_port(HOSTS[victim][2], 11211, up=False)

    # An empty journal the proxy (nobody) can append to: one root created would refuse it.
    podman_exec("install", "-o", "nobody", "-m", "0644", "/dev/null", render_memcached_proxy.JOURNAL_PATH)
    errors = sum(1 for key in victim_keys if not router.set(f"/eqiad/mw/{key}", b"new", noreply=False))
    assert errors == 0
    assert router.delete(f"/eqiad/mw/{victim_keys[0]}", noreply=False) is not None
    router.set(f"/eqiad/mw/{victim_keys[0]}", b"new", noreply=False)
    # Every write and delete the gutter took in the victim's place is journalled, nothing else:
    # not the reads, not the keys of healthy shards.
    with MemcacheClient(HOSTS["mw1001"][2], 11213, read_protocol="meta") as meta:
        assert meta.get_many([f"/eqiad/mw/{key}" for key in keys])
    journal = podman_exec("cat", render_memcached_proxy.JOURNAL_PATH).splitlines()
    commands = [line.split(" ")[1:] for line in journal]
    assert commands == [
        *(["set", key] for key in victim_keys),
        ["delete", victim_keys[0]],
        ["set", victim_keys[0]],
    ]
    assert all(abs(int(line.split(" ")[0]) - time.time()) < 60 for line in journal)
    assert all(gutter.get(key) == b"new" for key in victim_keys)
    assert all(router.get(key) == b"new" for key in victim_keys)
    with MemcacheClient(HOSTS["mw1001"][2], 11213, read_protocol="meta") as meta:
        prefixed = meta.get_many([f"/eqiad/mw/{key}" for key in victim_keys])
    assert prefixed == {f"/eqiad/mw/{key}": b"new" for key in victim_keys}
    ttl_reply = raw(HOSTS["mc-gp1001"][2], 11211, f"mg {victim_keys[0]} t\r\n".encode())
    assert ttl_reply.startswith(b"HD t")
    assert 0 < int(ttl_reply.split(b"t")[-1]) <= GUTTER_TTL_S
    # Keys of healthy shards never touch the gutter.
    assert not any(gutter.get(key) for key in keys if key not in victim_keys)
    time.sleep(GUTTER_TTL_S + 1)
    assert not any(gutter.get(key) for key in victim_keys)


def test_a_returning_shard_never_serves_a_copy_older_than_its_failover_writes(fleet):
    """The race a journal replay alone leaves open: a write goes to the gutter just before the
    router re-admits the shard, and a read after the re-admission meets the shard's older copy
    before the replay deletes it. Here there is no replay at all: the shard is paused (its data
    kept) and resumed, and the router's fences alone must keep every read from its old copies."""
    router = client("mw1001", 11213)
    keys = [f"fence{i}" for i in range(300)]
    for key in keys:
        router.set(key, b"old", noreply=False)
    victim_keys = [key for key in keys if client("mc1002").get(key) == b"old"]
    assert len(victim_keys) >= 20
    overwritten, deleted, rewritten = victim_keys[:2], victim_keys[2:4], victim_keys[4:5]
    probe, sacrifices = victim_keys[5], itertools.cycle(victim_keys[6:])
    # Emptied in place, as failover_journal does: the proxy's threads keep their open handles.
    podman_exec("truncate", "-s", "0", render_memcached_proxy.JOURNAL_PATH)

    pid = podman_exec("pgrep", "-f", "-x", backend_command("mc1002")).split()[0]
    podman_exec("kill", "-STOP", pid)
    try:
        # Requests sent before the router marks the shard bad wait in its socket and would run on
        # resume: write only once a write fails over at once (the router no longer sends it).
        def fails_over_at_once():
            started = time.monotonic()
            router.set(next(sacrifices), b"x", noreply=False)
            return time.monotonic() - started < 0.2

        wait_until(lambda: fails_over_at_once() and fails_over_at_once(), timeout_s=30)
        for key in overwritten + rewritten:
            assert router.set(key, b"new", noreply=False)
        for key in deleted:
            router.delete(key, noreply=False)
    finally:
        podman_exec("kill", "-CONT", pid)

    # Re-admitted: a key held only by the shard reads through the router again.
    client("mc1002").set(probe, b"direct", noreply=False)
    wait_until(lambda: router.get(probe) == b"direct", timeout_s=30)
    # The shard still holds its old copies: without the fences they are what a read would get.
    assert all(client("mc1002").get(key) == b"old" for key in overwritten + deleted + rewritten)

    # What the gutter holds, or nothing once the gutter TTL has passed: never the shard's copy.
    gutter = client("mc-gp1001")
    assert [router.get(key) for key in overwritten] == [gutter.get(key) for key in overwritten]
    assert not {router.get(key) for key in overwritten} - {b"new", None}
    assert [router.get(key) for key in deleted] == [None] * len(deleted)
    # A fenced write deletes the shard's copy before the gutter takes it.
    assert router.set(rewritten[0], b"newer", noreply=False)
    assert router.get(rewritten[0]) == b"newer"
    assert client("mc1002").get(rewritten[0]) is None
    journal = podman_exec("cat", render_memcached_proxy.JOURNAL_PATH).splitlines()
    journal = [line.split(" ")[1:] for line in journal]
    assert ["delete", deleted[0]] in journal and ["set", rewritten[0]] in journal

    # The replay has deleted the shard's copies; then the gutter fails while the keys are still
    # fenced (a maintenance takes the gutter out right after the shards): the shard answers.
    for key in overwritten + deleted:
        client("mc1002").delete(key, noreply=False)
    gutter_pid = podman_exec("pgrep", "-f", "-x", backend_command("mc-gp1001")).split()[0]
    podman_exec("kill", "-STOP", gutter_pid)
    try:
        assert [router.get(key) for key in overwritten + deleted] == [None] * 4
        assert router.set(overwritten[0], b"while the gutter is out", noreply=False)
        assert router.get(overwritten[0]) == b"while the gutter is out"
        assert client("mc1002").get(overwritten[0]) == b"while the gutter is out"
    finally:
        podman_exec("kill", "-CONT", gutter_pid)
