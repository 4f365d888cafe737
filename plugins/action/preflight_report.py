"""Action plugin mcfleet.fleet.preflight_report: preflight's checks, table and JSON in one step.

Its documentation is the module stub plugins/modules/preflight_report.py. It runs once,
on the controller, and contacts no host: it reads what preflight_probe returned on each
host (registered as RESULT_VAR), renders every router's config from the model to compare
checksums, and hands everything to plugins/module_utils/preflight.py, which decides each
check. It writes the JSON report (also under --check: the report is the run's output and
changes no host) and returns the rows, the table's lines and the failed checks.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.mcfleet.fleet.plugins.filter.mcfleet import router_config
from ansible_collections.mcfleet.fleet.plugins.module_utils import preflight
from ansible_collections.mcfleet.fleet.plugins.module_utils.safe_files import replace_file

# What playbooks/preflight.yml registers on each host (the preflight_probe result).
RESULT_VAR = "__preflight_probe"

ARGUMENT_SPEC = {
    "model": {"type": "dict", "required": True},
    "hosts": {"type": "list", "elements": "str", "required": True},
    "batch_size": {"type": "int", "default": 1},
    "target_release": {"type": "str"},
    "in_maintenance": {"type": "list", "elements": "str", "default": []},
    "report_dir": {"type": "path", "required": True},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _spec, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        model, hosts = args["model"], args["hosts"]
        hostvars = task_vars["hostvars"]
        probes, expected_sha1 = {}, {}
        for host in hosts:
            if host not in model.get("hosts", {}):
                continue
            variables = hostvars[host]
            probes[host] = preflight.plain(variables[RESULT_VAR]) if RESULT_VAR in variables else None
            if host in model.get("routers", {}):
                expected_sha1[host] = hashlib.sha1(router_config(model, host).encode("utf-8")).hexdigest()
        rows = preflight.build_checks(
            model, hosts, probes, expected_sha1, args["batch_size"], args["target_release"]
        )
        rows = preflight.excuse_in_maintenance(rows, args["in_maintenance"])
        now = datetime.now(UTC)
        scope = preflight.scope_of(model, hosts)
        document = preflight.report(rows, scope, now.isoformat(timespec="seconds"), args["batch_size"])
        directory = Path(os.path.abspath(args["report_dir"]))
        path = directory / f"preflight-{scope}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
        try:
            replace_file(str(path), json.dumps(document, indent=2, sort_keys=False) + "\n")
        except OSError as error:
            raise AnsibleActionFail(f"report_dir: cannot write {str(path)!r}: {error.strerror}") from None
        result.update(
            changed=False,
            ok=document["ok"],
            summary=document["summary"],
            failed_checks=document["failed"],
            checks=rows,
            table=preflight.render_table(rows),
            path=str(path),
        )
        return result
