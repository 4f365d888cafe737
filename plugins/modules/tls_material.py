#!/usr/bin/python
"""Documentation of the action plugin mcfleet.fleet.tls_material (plugins/action/tls_material.py).

The work is done on the controller by the action plugin; this file has no code.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tls_material
short_description: Check a router's or proxy's cross-datacentre TLS files on the controller
description:
  - Reads the CA certificate, the host's certificate and its private key (PEM files on the
    controller) and fails, naming the file and the value, when one does not parse, the key is
    not the certificate's, the CA did not issue the certificate, the certificate has fewer
    than O(min_days_left) days left, or O(address) is not one of its IP subjectAltNames.
  - Runs on the controller only and contacts no host, so bad material is refused before any
    host changes. The private key is never returned or shown.
  - Read-only; C(changed) is always false.
version_added: "0.3.0"
author:
  - mcfleet maintainers (@mcfleet)
options:
  ca_file:
    description: The operator's CA certificate (C(mcfleet_tls_ca_file)).
    type: path
    required: true
  cert_file:
    description: The host's certificate (C(mcfleet_tls_cert_file)).
    type: path
    required: true
  key_file:
    description: The host's private key, unencrypted (C(mcfleet_tls_key_file)).
    type: path
    required: true
  address:
    description: An address the certificate must name as an IP subjectAltName (a proxy's; its peers check it).
    type: str
  min_days_left:
    description: Fail when the certificate expires in fewer days than this.
    type: int
    default: 0
extends_documentation_fragment:
  - action_common_attributes
  - action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: Reads only.
  diff_mode:
    support: none
    details: Changes nothing.
  platform:
    support: full
    platforms: posix
    details: Reads files on the controller only; needs the C(cryptography) Python package there.
seealso:
  - module: community.crypto.x509_certificate_info
"""

EXAMPLES = r"""
- name: Check this proxy's TLS material before installing it
  mcfleet.fleet.tls_material:
    ca_file: "{{ mcfleet.tls.ca_file }}"
    cert_file: "{{ mcfleet.routers[inventory_hostname].tls_files.cert }}"
    key_file: "{{ mcfleet.routers[inventory_hostname].tls_files.key }}"
    address: "{{ mcfleet.routers[inventory_hostname].address }}"
"""

RETURN = r"""
certificate:
  description: The host's certificate.
  returned: success
  type: dict
  contains:
    subject:
      description: Subject, RFC 4514.
      type: str
      sample: CN=mwproxy2001
    not_after:
      description: Expiry, ISO 8601 UTC.
      type: str
      sample: "2027-11-30T15:00:00+00:00"
    days_left:
      description: Whole days until expiry.
      type: int
      sample: 364
    ip_addresses:
      description: IP subjectAltNames.
      type: list
      elements: str
      sample: [10.89.213.26]
problems:
  description: Every problem found, each naming the file and the value.
  returned: failure
  type: list
  elements: str
"""
