"""Replication accounting against real memcached on loopback.

No replicating router runs here (Debian bookworm's memcached has no proxy): the "router" is
a plain memcached that keeps what it is sent, so nothing ever reaches the other side. That
is the cut-off datacentre of a proxy drill: every write must be counted lost, quickly. The
replicating case is run for real by the Molecule scenario `proxies`.
"""

import time

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import MemcacheClient
from ansible_collections.mcfleet.fleet.plugins.module_utils.replication import check_replication
from ansible_collections.mcfleet.fleet.tests.unit.failover_fixtures import MemcachedProcess


@pytest.fixture()
def servers():
    started = [MemcachedProcess(), MemcachedProcess()]
    yield started
    for server in started:
        server.stop()


def test_a_cut_off_datacentre_loses_every_write_and_costs_one_deadline(servers):
    router, remote = (MemcacheClient(*server.spec) for server in servers)
    start = time.monotonic()
    result = check_replication(router, [remote], count=30, deadline_s=0.5, local_shards=[router])
    elapsed = time.monotonic() - start
    assert result["attempted"] == result["acknowledged"] == 30
    assert (result["set_arrived"], result["set_lost"]) == (0, 30)
    # Deletes are measured only for keys that arrived.
    assert (result["delete_arrived"], result["delete_lost"]) == (0, 0)
    assert result["set_delay_ms"] == {"p50": None, "p99": None}
    # The first key waits its deadline, the rest get one final look: not 30 deadlines (15 s).
    # Half of that leaves a loaded machine room, and still tells one deadline from thirty.
    assert elapsed < 30 * 0.5 / 2, elapsed
    # The router (a plain memcached here) stored each key under its full name, and each was
    # deleted again: the local side is as it was.
    assert router.get(f"/*/mw-wan/{result['tag']}-0") is None
    assert result["errors"] == []
