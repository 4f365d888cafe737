"""mcfleet.fleet.route_explain's main(): arguments, results, check mode and refusals."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mcfleet.fleet.plugins.module_utils import render_memcached_proxy
from ansible_collections.mcfleet.fleet.plugins.module_utils.route_hashing import proxy_pool_index
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
from ansible_collections.mcfleet.fleet.plugins.modules import route_explain as module

# The lab's eqiad, in plain dicts: ansible-test runs module tests without Ansible's inventory code.
LAB_EQIAD = {
    "mc1001": ("memcached_main", "10.89.213.11"),
    "mc1002": ("memcached_main", "10.89.213.12"),
    "mc1003": ("memcached_main", "10.89.213.13"),
    "mc-gp1001": ("memcached_gutter", "10.89.213.14"),
    "mw1001": ("routers", "10.89.213.15"),
}


@pytest.fixture(scope="module", name="lab")
def fixture_lab():
    groups, hostvars = {}, {}
    for host, (group, address) in LAB_EQIAD.items():
        groups.setdefault(group, []).append(host)
        hostvars[host] = {
            "mcfleet_address": address,
            "mcfleet_datacentre": "eqiad",
            "mcfleet_router_engine": "memcached_proxy",
        }
    return build_topology(groups, hostvars)


def run(capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        module.main()
    result = json.loads(capsys.readouterr().out)
    result["rc"] = exited.value.code
    return result


@pytest.mark.parametrize("check_mode", [False, True])
def test_the_module_names_the_shard_and_changes_nothing(capsys, lab, check_mode):
    result = run(capsys, model=lab, router="mw1001", key="/eqiad/mw/user:42", _ansible_check_mode=check_mode)
    main = [entry["host"] for entry in lab["datacentres"]["eqiad"]["main"]]
    assert result["rc"] == 0
    assert result["changed"] is False
    assert [d["host"] for d in result["destinations"]] == [main[proxy_pool_index(b"user:42", 3)]]
    assert result["explanation"]["hashed_key"] == "user:42"


def test_the_module_counts_what_moves_from_a_deployed_config(capsys, lab, tmp_path):
    config = tmp_path / "proxy.lua"
    config.write_text(render_memcached_proxy.render_config_text(lab, "mw1001"))
    result = run(capsys, config=str(config), keys=2000, blocked=["mc1002"])
    assert result["rc"] == 0
    moves = result["what_moves"]
    assert moves["keys"] == 2000
    assert list(moves["moved_to"]) == ["mc-gp1001"]
    assert moves["moved"] == moves["moved_to"]["mc-gp1001"]["count"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"key": "bad key"}, "key='bad key': contains a space"),
        ({"key": "k" * 260}, "260 bytes, more than memcached's 250-byte limit"),
        ({"key": "k", "router": "mc1001"}, "router='mc1001': not a router or proxy"),
    ],
)
def test_the_module_refuses_bad_input_naming_the_field(capsys, lab, args, message):
    result = run(capsys, **{"model": lab, "router": "mw1001", **args})
    assert result["failed"] is True
    assert message in result["msg"]
    assert result["changed"] is False


def test_an_unreadable_or_broken_config_is_named(capsys, tmp_path):
    missing = tmp_path / "missing.json"
    assert f"config={missing}: cannot read it" in run(capsys, config=str(missing), key="k")["msg"]
    broken = tmp_path / "config.json"
    broken.write_text("{not json")
    assert (
        f"config={broken}: not JSON that mcrouter can read" in run(capsys, config=str(broken), key="k")["msg"]
    )
