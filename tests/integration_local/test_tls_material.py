"""The cross_dc_tls role's controller check, run by ansible-playbook with -vvv: a key that is
not the certificate's is refused naming both files, and no key text reaches the output."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from ansible_collections.mcfleet.fleet.tests.unit.plugins.module_utils.test_tls_material import (
    certificate,
    new_key,
    pem_key,
)
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import REPO

ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
PLAYBOOK = textwrap.dedent("""\
    - name: Check TLS material
      hosts: localhost
      connection: local
      gather_facts: false
      tasks:
        - name: Check the files
          mcfleet.fleet.tls_material:
            ca_file: "{{ dir }}/ca.pem"
            cert_file: "{{ dir }}/proxy.pem"
            key_file: "{{ dir }}/{{ key_name }}"
            address: 10.0.2.30
    """)


def run(tmp_path, key_name):
    return subprocess.run(
        [
            str(ANSIBLE_PLAYBOOK),
            "-vvv",
            str(tmp_path / "check.yml"),
            "-e",
            f"dir={tmp_path}",
            "-e",
            f"key_name={key_name}",
        ],
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_key_that_is_not_the_certificates_is_refused_and_never_printed(tmp_path):
    ca_key, proxy_key, other_key = new_key(), new_key(), new_key()
    (tmp_path / "ca.pem").write_bytes(certificate(ca_key, "lab-ca", ca_key, ca=True))
    (tmp_path / "proxy.pem").write_bytes(
        certificate(proxy_key, "mwproxy2001", ca_key, "lab-ca", address="10.0.2.30")
    )
    (tmp_path / "proxy.key").write_bytes(pem_key(proxy_key))
    (tmp_path / "other.key").write_bytes(pem_key(other_key))
    (tmp_path / "check.yml").write_text(PLAYBOOK)

    good = run(tmp_path, "proxy.key")
    assert good.returncode == 0, good.stdout[-2000:]
    refused = run(tmp_path, "other.key")
    assert refused.returncode != 0
    assert f"mcfleet_tls_key_file {tmp_path}/other.key is not the private key of mcfleet_tls_cert_file" in (
        refused.stdout
    )
    for result, key in ((good, proxy_key), (refused, other_key)):
        body = pem_key(key).decode().splitlines()[1]
        assert body not in result.stdout + result.stderr, "key material in the output"
