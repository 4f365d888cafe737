"""Build the topology model on the controller and set it as the `mcfleet` fact.

An invalid inventory fails this task with one message that lists every problem (and
`problems` as a list), instead of a filter error wrapped in Ansible's templating text.
"""

from ansible.plugins.action import ActionBase
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import TopologyError, build_topology


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        unknown = sorted(set(self._task.args) - {"fact_name", "shadow"})
        if unknown:
            return {**result, "failed": True, "msg": f"unknown options: {', '.join(unknown)}"}
        fact_name = self._task.args.get("fact_name", "mcfleet")
        try:
            # `shadow` turns a shadow on for this run (playbooks/shadow_lru.yml); without it
            # the inventory's mcfleet_shadow (none by default) holds.
            model = build_topology(
                task_vars["groups"], task_vars["hostvars"], shadow=self._task.args.get("shadow")
            )
        except TopologyError as error:
            return {**result, "failed": True, "msg": str(error), "problems": error.problems}
        return {**result, "changed": False, "ansible_facts": {fact_name: model}}
