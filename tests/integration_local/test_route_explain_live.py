"""The route explainer against real memcached 1.6.38 proxies: it names the server that holds each key.

Keys are written through the router, then every shard (and gutter server) is read directly
with the stripped key; the server that holds a key must be the one the explainer names.

- On the lab (`make lab`): 10,000 keys through mw1001's proxy, explained from the proxy.lua
  deployed there (the model's rendering when it cannot be read). Skipped when the lab is not
  up. Keys expire after 10 minutes and are deleted at the end.
- In a private container (host network, loopback 127.79.N.x, so nothing is shared): 3 shards,
  2 gutter servers and a router rendered from the model; 10,000 keys with every shard up,
  then 5,000 keys with one shard's memcached stopped, which the proxy fails over to the
  gutter server its jump hash over the gutter pool picks.
"""

import os
import shutil
import socket
import subprocess
import time

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils import render_memcached_proxy
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import MemcacheClient
from ansible_collections.mcfleet.fleet.plugins.module_utils.route_explain import (
    explain,
    load_router,
    router_from_model,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import REPO, inventory_data

KEY_COUNT = 10000
LAB_ROUTER = "mw1001"
IMAGE = "localhost/mcfleet-debian:trixie"
CONTAINER = f"mcfleet-test-explain-{os.getpid()}"
NET = f"127.79.{os.getpid() % 250 + 1}"
PRIVATE_HOSTS = {
    "mc1001": ("memcached_main", f"{NET}.11"),
    "mc1002": ("memcached_main", f"{NET}.12"),
    "mc1003": ("memcached_main", f"{NET}.13"),
    "mc-gp1001": ("memcached_gutter", f"{NET}.14"),
    "mc-gp1002": ("memcached_gutter", f"{NET}.15"),
    "mw1001": ("routers", f"{NET}.16"),
}


def reachable(address, port, timeout_s=1.0):
    """Whether memcached (or its proxy) answers `version` there.

    A bare TCP connect is not enough: where the lab's network does not exist, the route may
    lead to an egress proxy that accepts any connection (seen: it answered HTTP 400).
    """
    try:
        with socket.create_connection((address, port), timeout=timeout_s) as conn:
            conn.settimeout(timeout_s)
            conn.sendall(b"version\r\n")
            return conn.recv(64).startswith(b"VERSION ")
    except OSError:
        return False


def write_through_router(address, port, keys, exptime):
    with MemcacheClient(address, port, timeout_s=5) as router:
        for key in keys:
            assert router.set(key, b"explained", exptime=exptime), key


def holders(servers, stripped_keys):
    """{stripped key: [servers holding it]}, reading every server directly."""
    found = {key: [] for key in stripped_keys}
    for host, (address, port) in servers.items():
        with MemcacheClient(address, port, timeout_s=5) as client:
            for start in range(0, len(stripped_keys), 500):
                for key in client.get_many(stripped_keys[start : start + 500]):
                    found[key].append(host)
    return found


def wrong_placements(router, keys, found, blocked=()):
    """Keys whose explained server is not the one server that holds them."""
    wrong = []
    for key in keys:
        result = explain(router, "set", key, blocked)
        named = [destination["host"] for destination in result["destinations"]]
        held = found[result["hashed_key"]]
        if named != held:
            wrong.append((key, named, held))
    return wrong


# The lab ------------------------------------------------------------------------------


@pytest.fixture(scope="module", name="lab")
def fixture_lab():
    model = build_topology(*inventory_data("lab"))
    router = model["routers"][LAB_ROUTER]
    dc = model["datacentres"][router["datacentre"]]
    servers = {entry["host"]: (entry["address"], entry["port"]) for entry in dc["main"] + dc["gutter"]}
    down = [
        name
        for name, (address, port) in {LAB_ROUTER: (router["address"], router["port"]), **servers}.items()
        if not reachable(address, port)
    ]
    if down:
        pytest.skip(f"the lab is not up (make lab): {', '.join(down)} not reachable from here")
    return model, servers


def deployed_router(model):
    """mw1001's deployed proxy.lua through podman, or the model's rendering when it cannot be read."""
    try:
        text = subprocess.run(
            ["podman", "exec", f"mcfleet-{LAB_ROUTER}", "cat", render_memcached_proxy.CONFIG_PATH],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return router_from_model(model, LAB_ROUTER)
    return load_router(text, f"{LAB_ROUTER}:{render_memcached_proxy.CONFIG_PATH}")


def test_the_explainer_names_the_shard_of_every_key_written_through_the_lab_router(lab):
    model, servers = lab
    router_entry = model["routers"][LAB_ROUTER]
    prefix = model["datacentres"][router_entry["datacentre"]]["route_prefix"]
    router = deployed_router(model)
    run = f"{os.getpid()}-{int(time.time())}"
    keys = [f"{prefix}mcfleet-explain-{run}-{number}" for number in range(KEY_COUNT)]
    write_through_router(router_entry["address"], router_entry["port"], keys, exptime=600)
    try:
        found = holders(servers, [key[len(prefix) :] for key in keys])
        assert wrong_placements(router, keys, found) == []
        spread = {host: sum(1 for held in found.values() if held == [host]) for host in servers}
        print(
            f"lab: {KEY_COUNT} keys through {LAB_ROUTER} explained from {router.name}: "
            f"all on the named shard {spread}"
        )
    finally:
        with MemcacheClient(router_entry["address"], router_entry["port"], timeout_s=5) as client:
            for key in keys:
                client.delete(key)


# A private fleet in a container -------------------------------------------------------


def _podman_usable():
    if shutil.which("podman") is None:
        return False
    exists = subprocess.run(["podman", "image", "exists", IMAGE], capture_output=True, check=False)
    return exists.returncode == 0


def podman_exec(*args, stdin=None, detach=False):
    command = ["podman", "exec", *(["-d"] if detach else []), *(["-i"] if stdin else []), CONTAINER, *args]
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, check=True, timeout=300
    ).stdout


def wait_for(address, port, up=True, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if reachable(address, port, 0.2) == up:
            return
        time.sleep(0.05)
    raise AssertionError(f"{address}:{port} did not go {'up' if up else 'down'} within {timeout_s}s")


@pytest.fixture(scope="module", name="private_fleet")
def fixture_private_fleet():
    if not _podman_usable():
        pytest.skip(f"needs podman and {IMAGE} (lab/build-image.sh)")
    groups, hostvars = {}, {}
    for host, (group, address) in PRIVATE_HOSTS.items():
        groups.setdefault(group, []).append(host)
        hostvars[host] = {
            "mcfleet_address": address,
            "mcfleet_datacentre": "eqiad",
            "mcfleet_router_engine": "memcached_proxy",
            "mcfleet_gutter_ttl_s": 600,
            "mcfleet_cross_dc_tls": False,
        }
    model = build_topology(groups, hostvars)
    subprocess.run(
        ["podman", "run", "-d", "--network", "host", "--name", CONTAINER, IMAGE, "sleep", "infinity"],
        check=True,
        capture_output=True,
    )
    try:
        podman_exec(
            "sh",
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq memcached",
        )
        library = REPO / "roles" / "memcached_proxy" / "files" / "routes.lua"
        podman_exec("sh", "-c", "cat > /tmp/routes.lua", stdin=library.read_text())
        # The failover journal's directory, as the memcached_proxy role creates it.
        podman_exec("install", "-d", "-o", "nobody", render_memcached_proxy.JOURNAL_DIRECTORY)
        for group, address in PRIVATE_HOSTS.values():
            if group != "routers":
                podman_exec(
                    "memcached", "-u", "nobody", "-l", address, "-p", "11211", "-m", "32", detach=True
                )
                wait_for(address, 11211)
        config = render_memcached_proxy.render_config_text(model, "mw1001")
        podman_exec("sh", "-c", "cat > /tmp/proxy.lua", stdin=config)
        options = render_memcached_proxy.command_line_options(
            model, "mw1001", "/tmp/proxy.lua", "/tmp/routes.lua"
        )
        podman_exec("memcached", "-u", "nobody", "-m", "16", *options, detach=True)
        router = model["routers"]["mw1001"]
        wait_for(router["address"], router["port"])
        yield model
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", CONTAINER], capture_output=True, check=False)


def private_servers(model):
    dc = model["datacentres"]["eqiad"]
    return {entry["host"]: (entry["address"], entry["port"]) for entry in dc["main"] + dc["gutter"]}


def test_every_key_is_on_the_shard_the_explainer_names(private_fleet):
    model = private_fleet
    router, entry = router_from_model(model, "mw1001"), model["routers"]["mw1001"]
    keys = [f"/eqiad/mw/placed-{number}" for number in range(KEY_COUNT)]
    write_through_router(entry["address"], entry["port"], keys, exptime=0)
    found = holders(private_servers(model), [key[len("/eqiad/mw/") :] for key in keys])
    assert wrong_placements(router, keys, found) == []
    shards = {entry["host"] for entry in model["datacentres"]["eqiad"]["main"]}
    assert {held[0] for held in found.values()} == shards


def test_a_stopped_shards_keys_land_on_the_gutter_server_the_explainer_names(private_fleet):
    model = private_fleet
    router, entry = router_from_model(model, "mw1001"), model["routers"]["mw1001"]
    # The last shard: jump hash is consistent, so the keys of shards 0 and 1 of 3 would all
    # fail over to gutter server 0 and 1 of 2 respectively; shard 2's keys spread over both.
    stopped = "mc1003"
    address = PRIVATE_HOSTS[stopped][1]
    # Anchored, so the pattern matches that memcached's command line and not this shell's.
    podman_exec("sh", "-c", f"kill $(pgrep -f '^memcached -u nobody -l {address} ')")
    wait_for(address, 11211, up=False)
    keys = [f"/eqiad/mw/failover-{number}" for number in range(KEY_COUNT // 2)]
    write_through_router(entry["address"], entry["port"], keys, exptime=0)
    servers = {host: where for host, where in private_servers(model).items() if host != stopped}
    found = holders(servers, [key[len("/eqiad/mw/") :] for key in keys])
    assert wrong_placements(router, keys, found, blocked=[stopped]) == []
    gutter_used = {held[0] for held in found.values() if held and held[0].startswith("mc-gp")}
    assert gutter_used == {"mc-gp1001", "mc-gp1002"}
