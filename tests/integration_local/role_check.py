"""Run the collection's real roles with ansible-playbook in --check --diff mode.

The hosts under test are reached with the local connection, so nothing but this machine
is needed, and check mode changes nothing on it. What a host would report about itself
(Debian release, RAM, addresses) is set as facts before the role runs, so a role sees the
host the test describes, not this controller. Tasks that would install packages or start
services are skipped by the role's own tags; the role's variables, defaults, vars files,
filters and templates are loaded and evaluated by Ansible as in a real run, and the tests
read what the role would write from the diff of each task.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"

PLAYBOOK = textwrap.dedent("""\
    - name: Build the topology model
      ansible.builtin.import_playbook: mcfleet.fleet.topology

    - name: Run the role on the hosts under test, as they describe themselves
      hosts: "{{ test_hosts }}"
      gather_facts: false
      pre_tasks:
        - name: Facts the host under test would report
          ansible.builtin.set_fact:
            ansible_distribution: Debian
            ansible_distribution_major_version: "{{ test_debian | string }}"
            ansible_distribution_version: "{{ test_debian | string }}"
            ansible_distribution_release: debian{{ test_debian }}
            ansible_memtotal_mb: 16384
            ansible_all_ipv4_addresses: ["{{ mcfleet_address }}"]
            ansible_default_ipv4: {address: "{{ mcfleet_address }}"}
            cacheable: true
          tags: [always]
      tasks:
        - name: Apply the role
          ansible.builtin.include_role:
            name: "{{ test_role }}"
          tags: [always]
    """)


class Run:
    """One ansible-playbook run: its return code, output and per-host task results."""

    def __init__(self, result: subprocess.CompletedProcess):
        self.returncode = result.returncode
        self.output = result.stdout + result.stderr
        self.tasks: dict[str, dict[str, dict]] = {}
        # The JSON report starts on a line of its own; callbacks enabled in ansible.cfg
        # (profile_tasks) may print around it.
        start = result.stdout.find("\n{")
        try:
            report, _end = json.JSONDecoder().raw_decode(result.stdout[start + 1 if start >= 0 else 0 :])
        except ValueError:
            report = {"plays": []}
        for play in report["plays"]:
            for task in play["tasks"]:
                # Role tasks are named "<role> : <task name>".
                name = task["task"]["name"].split(" : ", 1)[-1]
                for host, host_result in task["hosts"].items():
                    self.tasks.setdefault(host, {})[name] = host_result

    def written(self, host: str, task: str) -> str:
        """The content the task would write on the host, from its diff."""
        result = self.tasks[host][task]
        diffs = result.get("diff") or []
        if isinstance(diffs, dict):
            diffs = [diffs]
        afters = [diff["after"] for diff in diffs if isinstance(diff.get("after"), str)]
        assert afters, f"{host}: task {task!r} has no diff: {result}"
        return afters[-1]

    def failures(self) -> dict[str, str]:
        return {
            host: result.get("msg", "")
            for host, results in self.tasks.items()
            for result in results.values()
            if result.get("failed")
        }


def run_role(
    tmp_path: Path,
    role: str,
    hosts: str,
    inventory: Path | dict,
    debian: int,
    skip_tags: tuple[str, ...] = (),
    extra_vars: dict | None = None,
) -> Run:
    """Run role `role` (FQCN) on `hosts` of `inventory` (a path or an inventory dict)."""
    if isinstance(inventory, dict):
        path = tmp_path / "inventory.yml"
        path.write_text(yaml.safe_dump(inventory, sort_keys=False))
        inventory = path
    playbook = tmp_path / "role_check.yml"
    playbook.write_text(PLAYBOOK)
    variables = {
        "test_role": role,
        "test_hosts": hosts,
        "test_debian": debian,
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        **(extra_vars or {}),
    }
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_NOCOLOR": "1",
    }
    command = [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(playbook), "--check", "--diff"]
    command += ["-e", json.dumps(variables)]
    if skip_tags:
        command += ["--skip-tags", ",".join(skip_tags)]
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False
    )
    return Run(result)


def fleet_inventory(shards: dict[str, dict], settings: dict | None = None) -> dict:
    """A one-datacentre inventory: the given main shards plus a gutter, a router and a proxy."""
    hosts = {
        "memcached_main": shards,
        "memcached_gutter": {"mc-gp1001": {"mcfleet_address": "192.0.2.50"}},
        "routers": {"mw1001": {"mcfleet_address": "192.0.2.60"}},
        "proxies_primary": {"mwproxy1001": {"mcfleet_address": "192.0.2.70"}},
    }
    return {
        "all": {
            # One datacentre: no cross-datacentre TLS material to name.
            "vars": {"mcfleet_datacentre": "eqiad", "mcfleet_cross_dc_tls": False, **(settings or {})},
            "children": {
                "memcached": {"children": {"memcached_main": {}, "memcached_gutter": {}}},
                "proxies": {"children": {"proxies_primary": {}}},
                **{group: {"hosts": members} for group, members in hosts.items()},
            },
        }
    }
