"""The shadow on the real memcached proxy (Debian trixie, 1.6.38): route_split with
route_mcfleet_shadow copies one shard's share of the keys to both candidates, exactly the
keys whose FNV-1a hash falls in the fraction, and the client sees only the main route.

One container on the host network, loopback addresses 127.79.N.x: three shards, a gutter,
two shadow candidates and the router.
"""

import os
import subprocess
import time

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils import render_memcached_proxy
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import MemcacheClient
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
from ansible_collections.mcfleet.fleet.tests.integration_local.test_memcached_proxy_live import (
    APT_INSTALL,
    IMAGE,
    ROUTE_LIBRARY,
    _podman_usable,
    wait_for_port,
)
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import host_vars

pytestmark = pytest.mark.skipif(not _podman_usable(), reason=f"needs podman and {IMAGE} (lab/build-image.sh)")

CONTAINER = f"mcfleet-test-shadowlive-{os.getpid()}"
NET = f"127.79.{os.getpid() % 250 + 1}"
LIBRARY = "/tmp/mcfleet-routes.lua"
SHARDS = {"mc1001": f"{NET}.11", "mc1002": f"{NET}.12", "mc1003": f"{NET}.13"}
CANDIDATES = [
    {"host": "lru-baseline", "address": f"{NET}.41"},
    {"host": "lru-candidate", "address": f"{NET}.42"},
]


def in_container(*args, stdin=None, detach=False):
    command = ["podman", "exec", *(["-d"] if detach else []), *(["-i"] if stdin else []), CONTAINER, *args]
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, check=True, timeout=300
    ).stdout


def fnv1a_32(data: bytes) -> int:
    """The hash route_mcfleet_shadow uses (http://www.isthe.com/chongo/tech/comp/fnv/)."""
    value = 2166136261
    for byte in data:
        value = ((value ^ byte) * 16777619) & 0xFFFFFFFF
    return value


@pytest.fixture(scope="module")
def shadowed():
    groups = {"memcached_main": list(SHARDS), "memcached_gutter": ["mc-gp1001"], "routers": ["mw1001"]}
    settings = {"mcfleet_router_engine": "memcached_proxy", "mcfleet_cross_dc_tls": False}
    hostvars = {host: host_vars("eqiad", address, **settings) for host, address in SHARDS.items()}
    hostvars["mc-gp1001"] = host_vars("eqiad", f"{NET}.14", **settings)
    hostvars["mw1001"] = host_vars("eqiad", f"{NET}.15", **settings)
    model = build_topology(groups, hostvars, shadow={"shard": "mc1002", "candidates": CANDIDATES})
    subprocess.run(
        ["podman", "run", "-d", "--network", "host", "--name", CONTAINER, IMAGE, "sleep", "infinity"],
        check=True,
        capture_output=True,
    )
    try:
        in_container("sh", "-c", f"apt-get update -qq && {APT_INSTALL} memcached")
        in_container("sh", "-c", f"cat > {LIBRARY}", stdin=ROUTE_LIBRARY.read_text())
        backends = [*SHARDS.values(), f"{NET}.14", *(c["address"] for c in CANDIDATES)]
        for address in backends:
            in_container("memcached", "-u", "nobody", "-l", address, "-p", "11211", "-m", "16", detach=True)
        for address in backends:
            wait_for_port(address, 11211)
        in_container(
            "sh",
            "-c",
            "cat > /tmp/mw1001.lua",
            stdin=render_memcached_proxy.render_config_text(model, "mw1001"),
        )
        options = render_memcached_proxy.command_line_options(model, "mw1001", "/tmp/mw1001.lua", LIBRARY)
        in_container("memcached", "-u", "nobody", "-m", "16", *options, detach=True)
        wait_for_port(f"{NET}.15", 11213)
        yield model
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", CONTAINER], capture_output=True, check=False)


def test_both_candidates_get_exactly_one_shards_share_of_the_keys(shadowed):
    keys = [f"shadow{i}" for i in range(3000)]
    low, high = render_memcached_proxy.shadow_key_fraction(shadowed["shadow"])
    expected = {k for k in keys if low * 2**32 <= fnv1a_32(k.encode()) < high * 2**32}
    with MemcacheClient(f"{NET}.15", 11213, read_protocol="meta") as router:
        for key in keys:
            assert router.set(f"/eqiad/mw/{key}", f"v-{key}")
        # The client reads through the main route: every key, from the shards.
        assert router.get_many([f"/eqiad/mw/{k}" for k in keys[:200]]) == {
            f"/eqiad/mw/{k}": f"v-{k}".encode() for k in keys[:200]
        }
    on_shards = {}
    for host, address in SHARDS.items():
        with MemcacheClient(address, 11211) as shard:
            on_shards[host] = set(shard.get_many(keys))
    assert sum(len(held) for held in on_shards.values()) == len(keys)
    # The copy completes in the background: give its last sets a moment.
    deadline = time.monotonic() + 5
    while True:
        held = []
        for candidate in CANDIDATES:
            with MemcacheClient(candidate["address"], 11211) as server:
                found = server.get_many(keys)
            assert all(value == f"v-{key}".encode() for key, value in found.items())
            held.append(set(found))
        if held[0] == held[1] == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert held[0] == expected and held[1] == expected
    assert 0.25 < len(expected) / len(keys) < 0.42
