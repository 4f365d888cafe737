"""mcfleet.fleet.route_explain run by ansible-playbook on the lab inventory's model, in check mode.

Nothing is contacted: the model is built on the controller and the module runs there
(delegate_to: localhost), as in a maintenance play sizing a batch.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from ansible_collections.mcfleet.fleet.plugins.module_utils.route_hashing import proxy_pool_index
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import REPO

ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
PLAYBOOK = """
- name: Build the model
  ansible.builtin.import_playbook: mcfleet.fleet.topology

- name: Explain a key and what moves
  hosts: mw1001
  gather_facts: false
  tasks:
    - name: Which server holds the key while mc1001 is out
      mcfleet.fleet.route_explain:
        model: "{{ mcfleet }}"
        router: mw1001
        operation: set
        key: /eqiad/mw/user:42
        keys: 5000
        blocked: [mc1001]
      delegate_to: localhost
      register: route

    - name: Write what the module returned
      ansible.builtin.copy:
        content: "{{ route | to_json }}"
        dest: "{{ result_path }}"
        mode: "0644"
      delegate_to: localhost
      check_mode: false
      # The test's own output file; the recap then counts only the explainer's changes.
      changed_when: false

    - name: A key memcached cannot carry is refused
      mcfleet.fleet.route_explain:
        model: "{{ mcfleet }}"
        router: mw1001
        key: "two words"
      delegate_to: localhost
      register: refused
      failed_when: "'contains a space' not in refused.msg"
"""


def test_the_module_explains_in_check_mode_and_changes_nothing(tmp_path):
    playbook = tmp_path / "explain.yml"
    playbook.write_text(PLAYBOOK)
    result_path = tmp_path / "route.json"
    run = subprocess.run(
        [
            str(ANSIBLE_PLAYBOOK),
            "-i",
            str(REPO / "inventories" / "lab"),
            str(playbook),
            "--check",
            "-e",
            f"result_path={result_path}",
        ],
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "changed=0" in run.stdout.split("PLAY RECAP")[1].splitlines()[1]
    route = json.loads(result_path.read_text())
    assert route["changed"] is False
    home = ["mc1001", "mc1002", "mc1003"][proxy_pool_index(b"user:42", 3)]
    expected = "mc-gp1001" if home == "mc1001" else home
    assert [d["host"] for d in route["destinations"]] == [expected]
    assert list(route["what_moves"]["moved_to"]) == ["mc-gp1001"]
