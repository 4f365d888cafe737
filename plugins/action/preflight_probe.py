"""Action plugin mcfleet.fleet.preflight_probe: everything preflight reads on one host, in one task.

Its documentation is the module stub plugins/modules/preflight_probe.py. One task per host
instead of one per probe: on a lab of 14 containers, each task costs a worker process per
host however little it does, so four tasks cost seconds that one does not. The modules run
are the same as they would be as tasks, each once: netfilter_rules; memcached_health on a
memcached server, or router_health and a stat (SHA-1) of the deployed config on a router;
slurp of each TLS certificate named (their expiry is read on the controller).

The health call is timed on the controller (`controller_sent`, `controller_received` in its
result): the host's clock it returns was read in between, which is what the clock check
allows for (plugins/module_utils/preflight.py, clock_check). A module that fails is
returned as it failed, for the report to judge; an unreachable host fails the task as
unreachable (the playbook ignores that and the report names it).
"""

from __future__ import annotations

import time

from ansible.plugins.action import ActionBase

ARGUMENT_SPEC = {
    "memcached": {"type": "dict"},
    "router": {"type": "dict"},
    "config_path": {"type": "str"},
    "certificates": {"type": "list", "elements": "str", "default": []},
}


def _clean(result):
    return {key: value for key, value in result.items() if not key.startswith("_ansible")}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def _module(self, name, arguments, task_vars):
        return _clean(self._execute_module(module_name=name, module_args=arguments, task_vars=task_vars))

    def _timed(self, name, arguments, task_vars):
        sent = time.time()
        result = self._module(name, arguments, task_vars)
        result.update(controller_sent=sent, controller_received=time.time())
        return result

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        _spec, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        if bool(args["memcached"]) == bool(args["router"]):
            return {**result, "failed": True, "msg": "give exactly one of memcached and router"}
        probes = {"netfilter": self._module("mcfleet.fleet.netfilter_rules", {}, task_vars)}
        if args["memcached"]:
            probes["memcached"] = self._timed("mcfleet.fleet.memcached_health", args["memcached"], task_vars)
        else:
            probes["router"] = self._timed("mcfleet.fleet.router_health", args["router"], task_vars)
            if args["config_path"]:
                probes["config"] = self._module(
                    "ansible.builtin.stat",
                    {
                        "path": args["config_path"],
                        "checksum_algorithm": "sha1",
                        "get_mime": False,
                        "get_attributes": False,
                    },
                    task_vars,
                )
                probes["config_path"] = args["config_path"]
        # Certificates are public: their text comes back for the report to read the expiry.
        if args["certificates"]:
            probes["certificates"] = {
                path: self._module("ansible.builtin.slurp", {"src": path}, task_vars)
                for path in args["certificates"]
            }
        self._remove_tmp_path(self._connection._shell.tmpdir)
        return {**result, "changed": False, **probes}
