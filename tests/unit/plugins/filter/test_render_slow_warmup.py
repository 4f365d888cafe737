"""mcrouter's slow warm-up of a cold shard, from the model: golden files, and the refusals that
name the field and the value (mcrouter's own SlowWarmUpRouteSettings checks).

Regenerate the golden files after an intended change with
    MCFLEET_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/plugins/filter/test_render_slow_warmup.py
"""

import json
import os

import pytest
from ansible_collections.mcfleet.fleet.plugins.filter.mcfleet import CONFIG_NAMES, router_config
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import TopologyError, build_topology
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import REPO, inventory_data

GOLDEN = REPO / "tests" / "unit" / "golden" / "slow_warmup"
UPDATE = os.environ.get("MCFLEET_UPDATE_GOLDEN") == "1"
FIELD = "mcfleet_mcrouter_slow_warmup"
SETTINGS = {"enable_threshold": 0.5, "disable_threshold": 0.8, "start": 0.1, "step": 1, "min_requests": 100}


def model_with(slow_warmup, inventory="eqiad"):
    groups, hostvars = inventory_data(inventory)
    for variables in hostvars.values():
        variables["mcfleet_mcrouter_slow_warmup"] = slow_warmup
    return build_topology(groups, hostvars)


def test_golden_files_of_routers_that_warm_a_cold_shard_slowly():
    model = model_with(SETTINGS)
    files = {
        f"eqiad/{host}/{CONFIG_NAMES[router['engine']]}": router_config(model, host)
        for host, router in model["routers"].items()
    }
    if UPDATE:
        for path, text in files.items():
            (GOLDEN / path).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / path).write_text(text)
    on_disk = {str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*") if p.is_file()}
    assert on_disk == set(files), "golden files out of date: MCFLEET_UPDATE_GOLDEN=1 regenerates them"
    for path, text in files.items():
        assert (GOLDEN / path).read_text() == text, f"slow_warmup/{path} differs from its golden file"


def test_the_local_main_pool_warms_into_the_gutter_and_nothing_else_changes():
    model = model_with(SETTINGS)
    plain = build_topology(*inventory_data("eqiad"))
    router = "mw1001.eqiad.wmnet"
    warmed, before = json.loads(router_config(model, router)), json.loads(router_config(plain, router))
    local = next(r["route"] for r in warmed["routes"] if r["aliases"] == ["/eqiad/mw/"])
    assert local["normal"] == {
        "type": "PoolRoute",
        "pool": "eqiad",
        "slow_warmup": {"failoverTarget": "PoolRoute|eqiad-gutter", "settings": SETTINGS},
    }
    # Remote datacentres and the pools are as without it.
    assert warmed["pools"] == before["pools"]
    assert [r for r in warmed["routes"] if "eqiad" not in r["aliases"][0]] == [
        r for r in before["routes"] if "eqiad" not in r["aliases"][0]
    ]


def test_text_from_the_command_line_is_read_as_numbers():
    model = model_with({"enable_threshold": "0.5", "disable_threshold": "0.9"})
    assert model["slow_warmup"] == {"enable_threshold": 0.5, "disable_threshold": 0.9}


@pytest.mark.parametrize(
    ("slow_warmup", "message"),
    [
        ("on", "mcfleet_mcrouter_slow_warmup: 'on' is not a mapping"),
        (
            {"disable_threshold": 0.9},
            "mcfleet_mcrouter_slow_warmup.enable_threshold: None is not a number in [0, 1]",
        ),
        (
            {"enable_threshold": 0.9, "disable_threshold": 0.5},
            "enable_threshold 0.9 is not below disable_threshold 0.5",
        ),
        ({**SETTINGS, "start": 1}, "mcfleet_mcrouter_slow_warmup.start: 1 is not a number in (0, 1)"),
        ({**SETTINGS, "step": 0}, "mcfleet_mcrouter_slow_warmup.step: 0 is not a number in (0, 100)"),
        (
            {**SETTINGS, "min_requests": 0},
            "mcfleet_mcrouter_slow_warmup.min_requests: 0 is not a whole number above 0",
        ),
        ({**SETTINGS, "ratio": 1}, "mcfleet_mcrouter_slow_warmup: ratio not one of enable_threshold"),
    ],
)
def test_bad_settings_are_refused_naming_the_field_and_the_value(slow_warmup, message):
    with pytest.raises(TopologyError) as refused:
        model_with(slow_warmup)
    assert any(message in problem for problem in refused.value.problems), refused.value.problems
