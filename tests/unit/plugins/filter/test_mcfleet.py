"""The filters' own behaviour: refusals as Ansible errors, and what they give templates.

(The topology model itself is built by the topology action: tests/unit/plugins/action/test_topology.py.)
"""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.mcfleet.fleet.plugins.filter.mcfleet import (
    FilterModule,
    network_problem,
    tls_pair_problem,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
from ansible_collections.mcfleet.fleet.tests.unit.tls_fixtures import certificate, new_key, pem_key
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import small_fleet

FILTERS = FilterModule().filters()


@pytest.mark.parametrize("name", ["router_config", "router_config_name", "mcrouter_flags"])
def test_router_filters_refuse_a_host_that_is_no_router(name):
    model = build_topology(*small_fleet())
    with pytest.raises(AnsibleFilterError, match="mc1001 is not a router or proxy"):
        FILTERS[name](model, "mc1001")


def test_proxy_clients_refuses_an_app_servers_router_and_answers_for_a_proxy():
    model = build_topology(*small_fleet())
    with pytest.raises(AnsibleFilterError, match="mw1001 is a router, not a proxy"):
        FILTERS["proxy_clients"](model, "mw1001")
    # codfw's router (.20) and proxy (.30); eqiad's own hosts are not its clients.
    assert FILTERS["proxy_clients"](model, "mwproxy1001")["networks"] == ["10.0.2.20/32", "10.0.2.30/32"]


def test_config_names_follow_the_engine():
    groups, hostvars = small_fleet()
    hostvars["mw2001"]["mcfleet_router_engine"] = "memcached_proxy"
    model = build_topology(groups, hostvars)
    assert FILTERS["router_config_name"](model, "mw1001").endswith(".json")
    assert FILTERS["router_config_name"](model, "mw2001").endswith(".lua")
    assert FILTERS["router_config"](model, "mw2001").startswith("-- mcfleet: memcached proxy")


def test_network_problem_is_empty_for_a_network_and_names_a_bad_one():
    assert network_problem("fd00::/8") == ""
    assert "10.0.0.0/33" in network_problem("10.0.0.0/33")


def test_tls_pair_problem_names_the_fields_and_never_the_key():
    key, other_key = new_key(), new_key()
    cert, key_pem, other_pem = certificate(key, "mc1001", key), pem_key(key), pem_key(other_key)
    fields = ("memcached_tls_cert_content", "memcached_tls_key_content")
    assert tls_pair_problem(cert.decode(), key_pem.decode(), *fields) == ""
    assert tls_pair_problem("", "", *fields) == ""
    mismatch = tls_pair_problem(cert.decode(), other_pem.decode(), *fields)
    assert (
        mismatch
        == "memcached_tls_key_content is not the private key of memcached_tls_cert_content (CN=mc1001)"
    )
    assert "not an unencrypted PEM private key" in tls_pair_problem(cert.decode(), "junk", *fields)
    assert "not a PEM certificate" in tls_pair_problem("junk", key_pem.decode(), *fields)


def test_steady_p99_is_the_median_of_per_second_p99s(tmp_path):
    import json

    from ansible_collections.mcfleet.fleet.plugins.filter.mcfleet import steady_p99

    timeline = tmp_path / "traffic.jsonl"
    records = []
    for second in range(5):
        # One stalled second (40 ms) among four steady ones (1 ms).
        latency = 40.0 if second == 2 else 1.0
        records += [{"kind": "req", "t": 100 + second + i / 100, "ms": latency, "r": "ok"} for i in range(50)]
    timeline.write_text("".join(json.dumps(record) + "\n" for record in records))
    assert steady_p99(str(timeline)) == 1.0


def test_loading_the_filters_does_not_import_matplotlib():
    # Every Ansible worker that templates one of these filters imports this file, once per
    # host and task: matplotlib (about a second of CPU) is imported only to draw a chart.
    import os
    import subprocess
    import sys

    code = (
        "import sys; import ansible_collections.mcfleet.fleet.plugins.filter.mcfleet; "
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'matplotlib'))"
    )
    # A fresh interpreter that finds the collection where this one does.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert loaded.stdout.strip() == "[]"
