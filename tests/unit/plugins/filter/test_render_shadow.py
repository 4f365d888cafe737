"""Shadowing in the model and in both routers' configs: golden files, mcrouter's PoolRoute
`shadows`, the proxy's route_split, and the refusals that name the field and the value.

Regenerate the golden files after an intended change with
    MCFLEET_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/plugins/filter/test_render_shadow.py
"""

import json
import os

import pytest
from ansible_collections.mcfleet.fleet.plugins.filter.mcfleet import CONFIG_NAMES, router_config
from ansible_collections.mcfleet.fleet.plugins.module_utils import render_mcrouter, render_memcached_proxy
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import TopologyError, build_topology
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import REPO, inventory_data

GOLDEN = REPO / "tests" / "unit" / "golden" / "shadow"
UPDATE = os.environ.get("MCFLEET_UPDATE_GOLDEN") == "1"
CANDIDATES = [
    {"host": "lru-baseline", "address": "10.89.213.41"},
    {"host": "lru-candidate", "address": "10.89.213.42", "port": 11311},
]
# One production inventory (mcrouter) and the lab (memcached's proxy), each shadowing its
# datacentre's second shard.
SHADOWS = {
    "eqiad": {"shard": "mc1020.eqiad.wmnet", "candidates": CANDIDATES, "key_fraction": [0.0, 0.5]},
    "lab": {"shard": "mc1002", "candidates": CANDIDATES},
}


def shadowed_model(inventory, **changes):
    return build_topology(*inventory_data(inventory), shadow={**SHADOWS[inventory], **changes})


@pytest.mark.parametrize("inventory", sorted(SHADOWS))
def test_golden_files_of_shadowed_routers(inventory):
    model = shadowed_model(inventory)
    files = {
        f"{inventory}/{host}/{CONFIG_NAMES[router['engine']]}": router_config(model, host)
        for host, router in model["routers"].items()
        if host in model["shadow"]["routers"]
    }
    if UPDATE:
        for path, text in files.items():
            (GOLDEN / path).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / path).write_text(text)
    on_disk = {str(p.relative_to(GOLDEN)) for p in (GOLDEN / inventory).rglob("*") if p.is_file()}
    assert on_disk == set(files), "golden files out of date: MCFLEET_UPDATE_GOLDEN=1 regenerates them"
    for path, text in files.items():
        assert (GOLDEN / path).read_text() == text, f"shadow/{path} differs from its golden file"


def test_the_model_names_shard_position_candidates_and_routers():
    shadow = shadowed_model("eqiad")["shadow"]
    main = [e["host"] for e in build_topology(*inventory_data("eqiad"))["datacentres"]["eqiad"]["main"]]
    assert shadow["shard_index"] == main.index("mc1020.eqiad.wmnet") and shadow["shard_count"] == len(main)
    assert shadow["candidates"] == [
        {"host": "lru-baseline", "address": "10.89.213.41", "port": 11211},
        {"host": "lru-candidate", "address": "10.89.213.42", "port": 11311},
    ]
    assert shadow["key_fraction"] == [0.0, 0.5]
    # Every app server of eqiad by default; never the proxies.
    eqiad_routers = sorted(
        e["host"] for e in build_topology(*inventory_data("eqiad"))["datacentres"]["eqiad"]["routers"]
    )
    assert shadow["routers"] == eqiad_routers
    assert build_topology(*inventory_data("eqiad"))["shadow"] is None


def test_mcrouter_shadows_the_main_pool_at_the_shards_index_only_on_the_named_routers():
    routers = sorted(shadowed_model("eqiad")["shadow"]["routers"])
    model = shadowed_model("eqiad", routers=routers[:1])
    config = render_mcrouter.render_config(model, routers[0])
    route = next(r["route"] for r in config["routes"] if r["aliases"] == ["/eqiad/mw/"])
    normal = route["normal"]
    index = model["shadow"]["shard_index"]
    assert normal["type"] == "PoolRoute" and normal["pool"] == "eqiad"
    assert normal["shadows"] == [
        {
            "target": f"PoolRoute|eqiad-shadow-{c['host']}",
            "index_range": [index, index + 1],
            "key_fraction_range": [0.0, 0.5],
        }
        for c in model["shadow"]["candidates"]
    ]
    assert config["pools"]["eqiad-shadow-lru-candidate"] == {"servers": ["10.89.213.42:11311:ascii:plain"]}
    # /eqiad/mw-wan/ wraps the same route (default, set and delete), so it is shadowed too;
    # another router is not.
    assert json.dumps(config).count('"shadows"') == 4
    other = render_mcrouter.render_config(model, routers[1])
    assert '"shadows"' not in json.dumps(other) and "eqiad-shadow-lru-baseline" not in other["pools"]
    assert render_mcrouter.render_config_text(build_topology(*inventory_data("eqiad")), routers[1]) == (
        render_mcrouter.render_config_text(model, routers[1])
    )


def test_the_proxy_splits_one_shards_share_of_keys_to_the_candidates():
    model = shadowed_model("lab")
    text = render_memcached_proxy.render_config_text(model, "mw1001")
    assert "return route_split{" in text
    assert "key_fraction = { 0.0, 0.333333 }," in text
    assert (
        'child = route_allsync{ children = { "eqiad_shadow_lru-baseline", "eqiad_shadow_lru-candidate" } },'
        in text
    )
    assert '{ host = "10.89.213.42", port = 11311, label = "lru-candidate" },' in text
    assert render_memcached_proxy.shadow_key_fraction({"key_fraction": [0.2, 0.8], "shard_count": 3}) == [
        0.2,
        0.4,
    ]
    # codfw's router is not named by the shadow: unchanged.
    unshadowed = build_topology(*inventory_data("lab"))
    assert render_memcached_proxy.render_config_text(model, "mw2001") == (
        render_memcached_proxy.render_config_text(unshadowed, "mw2001")
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"shard": "mc-gp1001"}, "mcfleet_shadow.shard: 'mc-gp1001' is not a main shard (memcached_main)"),
        (
            {"candidates": [{"host": "spare", "address": "10.89.213.13"}]},
            "mcfleet_shadow.candidates[0].address: 10.89.213.13 is production host mc1003 (main): "
            "a shadow target must be a spare server",
        ),
        (
            {"candidates": [{"host": "mc1003", "address": "10.0.0.9"}]},
            "mcfleet_shadow.candidates[0].host: 'mc1003' is a production host (main): "
            "a shadow target must be a spare server",
        ),
        ({"candidates": []}, "mcfleet_shadow.candidates: [] is not a non-empty list"),
        (
            {"candidates": [{"host": "s", "address": "nowhere"}]},
            "mcfleet_shadow.candidates[0].address: 'nowhere'",
        ),
        (
            {"candidates": [{"host": "s", "address": "10.0.0.9", "port": 0}]},
            "mcfleet_shadow.candidates[0].port: 0",
        ),
        ({"key_fraction": [0.7, 0.2]}, "mcfleet_shadow.key_fraction: [0.7, 0.2] is not [from, to]"),
        (
            {"routers": ["mw2001"]},
            "mcfleet_shadow.routers: 'mw2001' is not a router (routers group) of mc1002's",
        ),
        ({"mirror": True}, "mcfleet_shadow: unknown keys mirror"),
    ],
)
def test_bad_shadows_are_refused_naming_field_and_value(changes, message):
    with pytest.raises(TopologyError) as error:
        shadowed_model("lab", **changes)
    assert any(problem.startswith(message) for problem in error.value.problems), error.value.problems
