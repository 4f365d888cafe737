#!/usr/bin/python
"""Take memcached's renewed TLS certificate into use without a restart (`refresh_certs`)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memcached_tls_refresh
short_description: Take memcached's renewed TLS certificate into use without restarting it
description:
  - Compares the certificate memcached's TLS listener presents with the first certificate of
    O(cert_path). When they differ, sends memcached C(refresh_certs) on its plain port, which
    loads the certificate, key and CA files again, and checks the listener then presents the
    file's certificate. memcached keeps running, and keeps its cache.
  - Before the command, checks the files are readable by O(user) (memcached reloads them as the
    user it has switched to, not as root) and are a certificate and its key, and that O(ca_path)
    parses. A reload that fails half way leaves memcached 1.6.18 refusing every handshake, so a
    problem fails the task before memcached is asked, naming the field and the file; memcached
    then still presents its previous certificate.
  - Reports C(changed) only when the listener presented another certificate; a memcached that
    is not running is left alone (it loads the files when it starts).
version_added: "0.4.0"
author:
  - mcfleet maintainers (@mcfleet)
options:
  address:
    description: The address memcached listens on.
    type: str
    required: true
  port:
    description: memcached's plain (non-TLS) port, where C(refresh_certs) is sent.
    type: int
    required: true
  tls_port:
    description: memcached's TLS port, whose certificate is read.
    type: int
    required: true
  cert_path:
    description:
      - The certificate file memcached loads (C(ssl_chain_cert)); its first certificate is the
        one the listener must present.
    type: path
    required: true
  key_path:
    description: The private key file memcached loads (C(ssl_key)).
    type: path
    required: true
  ca_path:
    description: The CA file memcached loads (C(ssl_ca_cert)), if any.
    type: path
  user:
    description: The user memcached runs as (C(-u)), who must be able to read the files.
    type: str
    default: memcache
  timeout_s:
    description: Connect and read timeout, in seconds.
    type: float
    default: 5.0
attributes:
  check_mode:
    support: full
    description: Reads the served and installed certificates and checks the files; sends nothing.
  diff_mode:
    support: full
    description: The fingerprint memcached presents before and after.
  platform:
    support: full
    platforms: posix
    description: Runs on the memcached host.
"""

EXAMPLES = r"""
- name: Take the renewed certificate into use without a restart
  mcfleet.fleet.memcached_tls_refresh:
    address: 10.64.0.11
    port: 11211
    tls_port: 11214
    cert_path: /etc/memcached/tls/cert.pem
    key_path: /etc/memcached/tls/key.pem
"""

RETURN = r"""
running:
  description: Whether memcached answered on O(port); when not, nothing was sent.
  returned: always
  type: bool
served_before:
  description: SHA-256 fingerprint of the certificate the listener presented before.
  returned: when memcached is running
  type: str
served_after:
  description: SHA-256 fingerprint of the certificate it presents after (the file's).
  returned: when memcached is running
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import (
    MemcacheClient,
    MemcacheError,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.tls_serving import (
    TLSServingError,
    fingerprint,
    leaf_der,
    listening,
    material_problems,
    served_der,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "address": {"type": "str", "required": True},
            "port": {"type": "int", "required": True},
            "tls_port": {"type": "int", "required": True},
            "cert_path": {"type": "path", "required": True},
            "key_path": {"type": "path", "required": True, "no_log": False},
            "ca_path": {"type": "path"},
            "user": {"type": "str", "default": "memcache"},
            "timeout_s": {"type": "float", "default": 5.0},
        },
        supports_check_mode=True,
    )
    params = module.params
    address, timeout_s = params["address"], params["timeout_s"]
    tls_address = f"{address}:{params['tls_port']}"
    try:
        installed = fingerprint(leaf_der(params["cert_path"]))
    except TLSServingError as error:
        module.fail_json(msg=f"cert_path: {error}", changed=False)
    if not listening(address, params["port"], timeout_s):
        module.exit_json(
            changed=False,
            running=False,
            msg=f"memcached does not answer on {address}:{params['port']}: it loads the files when it starts",
        )
    try:
        before = fingerprint(served_der(address, params["tls_port"], timeout_s))
    except TLSServingError as error:
        module.fail_json(msg=f"tls_port: {error}", changed=False, running=True)
    result = {"changed": False, "running": True, "served_before": before, "served_after": before}
    if before == installed:
        module.exit_json(**result)
    result["diff"] = {
        "before_header": f"certificate presented on {tls_address}",
        "after_header": params["cert_path"],
        "before": f"{before}\n",
        "after": f"{installed}\n",
    }
    problems = material_problems(params["cert_path"], params["key_path"], params["ca_path"], params["user"])
    if problems:
        module.fail_json(
            msg=f"refresh_certs not sent; memcached still presents {before}: " + "; ".join(problems),
            problems=problems,
            **result,
        )
    result["changed"] = True
    if module.check_mode:
        result["served_after"] = installed
        module.exit_json(**result)
    # From here memcached has been asked: a failure may have changed what it presents.
    try:
        with MemcacheClient(address, params["port"], timeout_s=timeout_s) as client:
            client.refresh_certs()
    except MemcacheError as error:
        module.fail_json(msg=f"{address}:{params['port']}: refresh_certs failed: {error}", **result)
    try:
        after = fingerprint(served_der(address, params["tls_port"], timeout_s))
    except TLSServingError as error:
        module.fail_json(msg=f"after refresh_certs, {error}", **result)
    result["served_after"] = after
    if after != installed:
        module.fail_json(
            msg=f"after refresh_certs, {tls_address} presents {after}, "
            f"not {params['cert_path']}'s {installed}",
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
