"""Every role documents exactly the variables it defaults, with the same default values.

Generic over roles/*: a new role is checked as soon as it has defaults or argument specs.
"""

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ROLES = (
    sorted(path for path in (REPO / "roles").iterdir() if path.is_dir()) if (REPO / "roles").is_dir() else []
)


def load_yaml(path):
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def role_defaults(role):
    return load_yaml(role / "defaults" / "main.yml")


def spec_options(role):
    specs = load_yaml(role / "meta" / "argument_specs.yml").get("argument_specs", {})
    return specs.get("main", {}).get("options", {}) or {}


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_argument_specs_name_the_same_variables_as_defaults(role):
    defaults, options = role_defaults(role), spec_options(role)
    assert (role / "meta" / "argument_specs.yml").exists(), f"{role.name} has no meta/argument_specs.yml"
    undocumented = sorted(set(defaults) - set(options))
    assert not undocumented, f"{role.name}: defaults/main.yml has {undocumented}, not in argument_specs"
    # Options without a default (required inputs) are fine; documented defaults must exist.
    phantom = sorted(name for name, option in options.items() if "default" in option and name not in defaults)
    assert not phantom, (
        f"{role.name}: argument_specs gives defaults for {phantom}, absent from defaults/main.yml"
    )


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_argument_spec_defaults_match_defaults_file(role):
    defaults, options = role_defaults(role), spec_options(role)
    mismatched = {
        name: (options[name]["default"], value)
        for name, value in defaults.items()
        if name in options and "default" in options[name] and options[name]["default"] != value
    }
    assert not mismatched, f"{role.name}: argument_specs default != defaults/main.yml: {mismatched}"


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_public_variables_carry_the_role_prefix(role):
    prefix = role.name + "_"
    unprefixed = sorted(name for name in role_defaults(role) if not name.startswith(prefix))
    assert not unprefixed, f"{role.name}: defaults without the {prefix} prefix: {unprefixed}"
