"""The action plugin mcfleet.fleet.render_configs: what it writes, when it reports a change,
check mode, diffs, bad input; and playbooks/render.yml, which runs it, end to end."""

import os
import re
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import yaml
from ansible.errors import AnsibleActionFail
from ansible.parsing.dataloader import DataLoader
from ansible_collections.mcfleet.fleet.plugins.action import render_configs
from ansible_collections.mcfleet.fleet.plugins.action.render_configs import ActionModule
from ansible_collections.mcfleet.fleet.plugins.module_utils import render_mcrouter, render_memcached_proxy
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
from ansible_collections.mcfleet.fleet.plugins.modules import render_configs as documentation

REPO = Path(__file__).resolve().parents[4]
ROUTES_LUA = REPO / "roles" / "memcached_proxy" / "files" / render_memcached_proxy.LIBRARY_NAME
MCROUTER_HOSTS = ("mw1001", "mw2001")
PROXY_HOSTS = ("mwproxy1001", "mwproxy2001")


def fleet_model(**settings):
    """Two datacentres, 2 shards + 1 gutter + 1 router + 1 proxy each; proxies on memcached_proxy."""
    groups = {"memcached_main": [], "memcached_gutter": [], "routers": [], "proxies_primary": []}
    hostvars = {}
    for number, dc in ((1, "eqiad"), (2, "codfw")):
        members = {
            "memcached_main": [f"mc{number}001", f"mc{number}002"],
            "memcached_gutter": [f"mc-gp{number}001"],
            "routers": [f"mw{number}001"],
            "proxies_primary": [f"mwproxy{number}001"],
        }
        for group, hosts in members.items():
            for host in hosts:
                groups[group].append(host)
                hostvars[host] = {
                    "mcfleet_datacentre": dc,
                    "mcfleet_address": f"10.64.{number}.{len(hostvars) + 1}",
                    "mcfleet_tls_ca_file": "/srv/pki/ca.pem",
                    "mcfleet_tls_cert_file": f"/srv/pki/{host}.pem",
                    "mcfleet_tls_key_file": f"/srv/pki/{host}.key",
                    **settings,
                }
        hostvars[f"mwproxy{number}001"]["mcfleet_router_engine"] = "memcached_proxy"
    return build_topology(groups, hostvars)


MODEL = fleet_model()


def expected_files(model=None, hosts=None):
    model = MODEL if model is None else model
    files = {}
    for host in hosts or model["routers"]:
        if model["routers"][host]["engine"] == "mcrouter":
            files[f"{host}/{render_mcrouter.CONFIG_NAME}"] = render_mcrouter.render_config_text(model, host)
        else:
            files[f"{host}/{render_memcached_proxy.CONFIG_NAME}"] = render_memcached_proxy.render_config_text(
                model, host
            )
            files[f"{host}/{render_memcached_proxy.LIBRARY_NAME}"] = ROUTES_LUA.read_text()
    return files


def files_under(directory):
    return {str(p.relative_to(directory)): p.read_text() for p in Path(directory).rglob("*") if p.is_file()}


def snapshot(directory):
    """Every path under `directory`, files with their inode and mtime: shows any write or removal."""
    return {
        str(p.relative_to(directory)): (p.stat().st_ino, p.stat().st_mtime_ns) if p.is_file() else "directory"
        for p in Path(directory).rglob("*")
    }


def run_action(check_mode=False, diff=False, **args):
    task = SimpleNamespace(args=args, check_mode=check_mode, diff=diff, async_val=0, action="render_configs")
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    action = ActionModule(task, connection, mock.MagicMock(), DataLoader(), None, None)
    action._load_name = "mcfleet.fleet.render_configs"
    return action.run(task_vars={})


def test_writes_every_routers_files_with_the_renderers_names(tmp_path):
    dest = tmp_path / "render"
    result = run_action(model=MODEL, dest=str(dest))
    assert result["changed"] is True
    assert files_under(dest) == expected_files()
    assert set(files_under(dest)) == {
        "mw1001/config.json",
        "mw2001/config.json",
        "mwproxy1001/proxy.lua",
        "mwproxy1001/routes.lua",
        "mwproxy2001/proxy.lua",
        "mwproxy2001/routes.lua",
    }
    assert result["hosts"] == sorted(MODEL["routers"])
    assert sorted(result["written"]) == sorted(str(dest / path) for path in expected_files())
    assert result["unchanged"] == 0 and result["dest"] == str(dest)
    for path in dest.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), path
    assert not list(dest.rglob(".*")), "temporary files left behind"


def test_a_second_run_changes_nothing_and_writes_nothing(tmp_path):
    run_action(model=MODEL, dest=str(tmp_path))
    before = snapshot(tmp_path)
    result = run_action(model=MODEL, dest=str(tmp_path))
    assert result["changed"] is False
    assert result["written"] == [] and result["unchanged"] == len(expected_files())
    assert snapshot(tmp_path) == before


def test_only_files_whose_content_differs_are_rewritten(tmp_path):
    run_action(model=MODEL, dest=str(tmp_path))
    stale = tmp_path / "mw1001" / "config.json"
    stale.write_text("{}\n")
    before = snapshot(tmp_path)
    result = run_action(model=MODEL, dest=str(tmp_path))
    assert result["changed"] is True
    assert result["written"] == [str(stale)]
    after = snapshot(tmp_path)
    assert after.pop("mw1001/config.json") != before.pop("mw1001/config.json")
    assert after == before, "an unchanged file was rewritten"
    assert files_under(tmp_path) == expected_files()


def test_a_changed_model_rewrites_the_files_it_changes(tmp_path):
    run_action(model=MODEL, dest=str(tmp_path))
    result = run_action(model=fleet_model(mcfleet_gutter_ttl_s=7), dest=str(tmp_path))
    # The gutter TTL is in every router's config; routes.lua is static.
    assert sorted(Path(path).relative_to(tmp_path).as_posix() for path in result["written"]) == [
        "mw1001/config.json",
        "mw2001/config.json",
        "mwproxy1001/proxy.lua",
        "mwproxy2001/proxy.lua",
    ]
    assert files_under(tmp_path) == expected_files(fleet_model(mcfleet_gutter_ttl_s=7))


def test_check_mode_writes_nothing_but_reports_the_change(tmp_path):
    dest = tmp_path / "render"
    result = run_action(check_mode=True, model=MODEL, dest=str(dest))
    assert result["changed"] is True and len(result["written"]) == len(expected_files())
    assert not dest.exists(), "check mode created the directory"

    run_action(model=MODEL, dest=str(dest))
    (dest / "mwproxy2001" / "proxy.lua").write_text("-- edited by hand\n")
    before = snapshot(dest)
    result = run_action(check_mode=True, model=MODEL, dest=str(dest))
    assert result["changed"] is True and result["written"] == [str(dest / "mwproxy2001" / "proxy.lua")]
    assert snapshot(dest) == before
    assert (dest / "mwproxy2001" / "proxy.lua").read_text() == "-- edited by hand\n"


def test_diff_has_one_entry_per_changed_file(tmp_path):
    result = run_action(diff=True, model=MODEL, dest=str(tmp_path), hosts=["mw1001"])
    config = tmp_path / "mw1001" / "config.json"
    assert result["diff"] == [
        {
            "before": "",
            "after": expected_files()["mw1001/config.json"],
            "before_header": f"{config} (absent)",
            "after_header": str(config),
        }
    ]
    config.write_text("{}\n")
    result = run_action(check_mode=True, diff=True, model=MODEL, dest=str(tmp_path), hosts=["mw1001"])
    assert result["diff"] == [
        {
            "before": "{}\n",
            "after": expected_files()["mw1001/config.json"],
            "before_header": str(config),
            "after_header": str(config),
        }
    ]
    assert config.read_text() == "{}\n"
    assert "diff" not in run_action(model=MODEL, dest=str(tmp_path), hosts=["mw1001"])
    assert run_action(diff=True, model=MODEL, dest=str(tmp_path), hosts=["mw1001"])["diff"] == []


def test_hosts_renders_only_those_hosts(tmp_path):
    result = run_action(model=MODEL, dest=str(tmp_path), hosts=["mwproxy2001", "mw1001"])
    assert result["hosts"] == ["mw1001", "mwproxy2001"]
    assert files_under(tmp_path) == expected_files(hosts=["mw1001", "mwproxy2001"])


def test_removes_nothing_it_did_not_write(tmp_path):
    (tmp_path / "mwproxy1001").mkdir()
    left = tmp_path / "mwproxy1001" / "config.json"  # from before the host changed engine
    left.write_text("old mcrouter config\n")
    (tmp_path / "notes.txt").write_text("review notes\n")
    (tmp_path / "retired-host").mkdir()
    run_action(model=MODEL, dest=str(tmp_path))
    assert left.read_text() == "old mcrouter config\n"
    assert (tmp_path / "notes.txt").read_text() == "review notes\n"
    assert (tmp_path / "retired-host").is_dir()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    run_action(model=MODEL, dest=str(tmp_path))
    config = tmp_path / "mw1001" / "config.json"
    config.write_text("old\n")
    with (
        mock.patch.object(
            render_configs.os, "replace", side_effect=OSError(28, "No space left", str(config))
        ),
        pytest.raises(AnsibleActionFail, match="dest: cannot write"),
    ):
        run_action(model=MODEL, dest=str(tmp_path))
    assert config.read_text() == "old\n"
    assert sorted(p.name for p in config.parent.iterdir()) == ["config.json"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"model": MODEL, "hosts": ["mw1001", "mc1001"]}, "hosts: 'mc1001': not a router or proxy"),
        ({"model": MODEL, "hosts": ["nowhere"]}, "hosts: 'nowhere': not a router or proxy"),
        ({"model": {"datacentres": {}}}, "model: not a topology model"),
        (
            {"model": {"routers": {"mw1001": {"engine": "twemproxy"}}}},
            "model.routers.mw1001.engine: 'twemproxy'",
        ),
        (
            {"model": {k: v for k, v in MODEL.items() if k != "datacentres"}},
            "model.routers.mw1001: cannot render",
        ),
        ({"model": MODEL, "dest": ""}, "dest: '' is empty"),
        ({"dest": "DEST"}, "missing required arguments: model"),
        ({"model": MODEL, "dest": None}, "missing required arguments: dest"),
        ({"model": MODEL, "render_dir": "x"}, "Unsupported parameters"),
    ],
)
def test_bad_input_fails_naming_the_field_and_writes_nothing(tmp_path, arguments, message):
    dest = tmp_path / "render"
    arguments = {"dest": "DEST", **arguments}
    if arguments["dest"] is None:
        del arguments["dest"]
    elif arguments["dest"] == "DEST":
        arguments["dest"] = str(dest)
    with pytest.raises(AnsibleActionFail, match=re.escape(message)):
        run_action(**arguments)
    assert not dest.exists()


def test_a_file_in_the_way_fails_before_anything_is_written(tmp_path):
    (tmp_path / "mwproxy2001").write_text("not a directory\n")
    with pytest.raises(AnsibleActionFail, match=r"dest: '.*/mwproxy2001' exists and is not a directory"):
        run_action(model=MODEL, dest=str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mwproxy2001"]
    with pytest.raises(AnsibleActionFail, match="exists and is not a directory"):
        run_action(model=MODEL, dest=str(tmp_path / "mwproxy2001"))


def test_a_missing_routes_library_fails_before_anything_is_written(tmp_path):
    with (
        mock.patch.object(render_configs, "ROUTES_LIBRARY", tmp_path / "absent.lua"),
        pytest.raises(AnsibleActionFail, match=r"routes library .*absent\.lua: cannot read it"),
    ):
        run_action(model=MODEL, dest=str(tmp_path / "render"))
    assert not (tmp_path / "render").exists()


def test_the_routes_library_is_found_in_the_collection():
    assert render_configs.ROUTES_LIBRARY.resolve() == ROUTES_LUA.resolve()


def test_the_documentation_matches_the_arguments_and_the_result(tmp_path):
    options = yaml.safe_load(documentation.DOCUMENTATION)["options"]

    def shape(specs):
        return {name: (spec["type"], spec.get("required", False)) for name, spec in specs.items()}

    assert shape(options) == shape(render_configs.ARGUMENT_SPEC)
    assert options["hosts"]["elements"] == render_configs.ARGUMENT_SPEC["hosts"]["elements"]
    result = run_action(model=MODEL, dest=str(tmp_path))
    returned = set(yaml.safe_load(documentation.RETURN))
    assert returned == set(result) - {"changed"}
    yaml.safe_load(documentation.EXAMPLES)


# playbooks/render.yml, run for real on an inventory of this repository, with the checkout's
# toolchain: ansible.cfg names Mitogen's strategy and ansible.posix's callback, which are in
# .venv. ansible-test's copy of the tree has no .venv, so there these tests skip; plain
# pytest (make unit) runs them.
ANSIBLE_PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
needs_checkout_venv = pytest.mark.skipif(
    not ANSIBLE_PLAYBOOK.exists(),
    reason="runs ansible-playbook from the checkout's .venv (Mitogen, ansible.posix); run by plain pytest",
)


def render_playbook(*arguments):
    environment = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    return subprocess.run(
        [
            str(ANSIBLE_PLAYBOOK),
            str(REPO / "playbooks" / "render.yml"),
            *arguments,
        ],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@needs_checkout_venv
def test_render_playbook_limit_renders_only_the_named_hosts_and_is_idempotent(tmp_path):
    limit = [
        "-i",
        str(REPO / "inventories" / "lab"),
        "--limit",
        "mw2001,mwproxy1002",
        "-e",
        f"render_dir={tmp_path}",
    ]
    result = render_playbook(*limit)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(files_under(tmp_path)) == {
        "mw2001/proxy.lua",
        "mw2001/routes.lua",
        "mwproxy1002/proxy.lua",
        "mwproxy1002/routes.lua",
    }
    assert "changed=1" in result.stdout
    again = render_playbook(*limit)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "changed=0" in again.stdout and "changed=1" not in again.stdout


@needs_checkout_venv
def test_render_playbook_check_diff_writes_nothing(tmp_path):
    dest = tmp_path / "render"
    result = render_playbook(
        "-i", str(REPO / "inventories" / "eqiad"), "-e", f"render_dir={dest}", "--check", "--diff"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"+++ after: {dest}/mw1001.eqiad.wmnet/config.json" in result.stdout
    assert not dest.exists()


@needs_checkout_venv
def test_render_playbook_without_render_dir_fails_naming_it():
    result = render_playbook("-i", str(REPO / "inventories" / "lab"))
    assert result.returncode != 0
    assert "render_dir is not set: pass -e render_dir=DIR" in result.stdout + result.stderr
