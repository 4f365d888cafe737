#!/usr/bin/env python3
"""Print what runs where in the lab (called at the end of `make lab`)."""

import json
import subprocess
import sys


def main():
    inventory = json.loads(
        subprocess.run(
            [".venv/bin/ansible-inventory", "-i", "inventories/lab", "--list"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    hostvars = inventory["_meta"]["hostvars"]
    groups_of = {}
    for group, body in inventory.items():
        for host in body.get("hosts", []) if isinstance(body, dict) else []:
            groups_of.setdefault(host, []).append(group)
    print(f"{'HOST':<13} {'ADDRESS':<14} {'SUITE':<9} GROUP")
    for host in sorted(hostvars, key=lambda name: hostvars[name]["mcfleet_address"]):
        facts = hostvars[host]
        groups = ",".join(groups_of.get(host, []))
        print(f"{host:<13} {facts['mcfleet_address']:<14} {facts['lab_suite']:<9} {groups}")
    print("Shell into a host: podman exec -it mcfleet-HOST bash")


if __name__ == "__main__":
    sys.exit(main())
