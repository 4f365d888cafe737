"""Action plugin mcfleet.fleet.tls_material: check a router's or proxy's TLS files on the controller.

Its documentation is the module stub plugins/modules/tls_material.py. It runs on the
controller and contacts no host, so bad material fails before any host changes. The logic is
plugins/module_utils/tls_material.py; the private key is read, compared, and never returned.
"""

from __future__ import annotations

from pathlib import Path

from ansible.plugins.action import ActionBase
from ansible_collections.mcfleet.fleet.plugins.module_utils import tls_material

ARGUMENT_SPEC = {
    "ca_file": {"type": "path", "required": True},
    "cert_file": {"type": "path", "required": True},
    "key_file": {"type": "path", "required": True},
    "address": {"type": "str"},
    "min_days_left": {"type": "int", "default": 0},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _spec, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        host = task_vars.get("inventory_hostname", "?")
        # The role passes the inventory variables' values; name both in every message.
        fields = {
            "ca": f"mcfleet_tls_ca_file {args['ca_file']}",
            "cert": f"mcfleet_tls_cert_file {args['cert_file']}",
            "key": f"mcfleet_tls_key_file {args['key_file']}",
        }
        contents = {}
        for kind in ("ca", "cert", "key"):
            try:
                contents[kind] = Path(args[f"{kind}_file"]).read_bytes()
            except OSError as error:
                return {
                    **result,
                    "failed": True,
                    "msg": f"{host}: {fields[kind]}: cannot read it on the controller: {error.strerror}",
                }
        problems = tls_material.check_peer(
            host,
            contents["ca"],
            contents["cert"],
            contents["key"],
            fields,
            address=args["address"],
            min_days_left=args["min_days_left"],
        )
        contents.pop("key")
        if problems:
            return {**result, "failed": True, "msg": "; ".join(problems), "problems": problems}
        certificate = tls_material.load_certificate(contents["cert"], fields["cert"])
        return {**result, "changed": False, "certificate": tls_material.summary(certificate)}
