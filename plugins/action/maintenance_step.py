"""Record one step of the rolling maintenance on the controller and show it as one line."""

import time

from ansible.plugins.action import ActionBase
from ansible_collections.mcfleet.fleet.plugins.module_utils.maintenance_progress import (
    RUN_STEPS,
    STEPS,
    append,
    load,
    progress_line,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        unknown = sorted(set(args) - {"log", "host", "step", "detail", "remaining_hosts", "data"})
        step = str(args.get("step", ""))
        if unknown or not args.get("log") or step not in STEPS + RUN_STEPS:
            known = ", ".join(STEPS + RUN_STEPS)
            return {
                **result,
                "failed": True,
                "msg": f"maintenance_step: log is required, step must be one of {known} "
                f"(got step={step!r}), unknown options: {', '.join(unknown) or 'none'}",
            }
        host = str(args.get("host") or task_vars.get("inventory_hostname"))
        log = str(args["log"])
        now = time.time()
        entries = load(log)
        line = progress_line(
            entries, host, step, str(args.get("detail") or ""), int(args.get("remaining_hosts", -1)), now
        )
        entry = {"t": now, "host": host, "step": step, "detail": str(args.get("detail") or "")}
        if args.get("data") is not None:
            entry["data"] = args["data"]
        # In check mode nothing is maintained, so nothing is logged.
        if not self._task.check_mode:
            append(log, entry)
        return {**result, "changed": False, "msg": line, "entry": entry, "_ansible_verbose_always": True}
