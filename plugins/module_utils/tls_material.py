"""Checks of the cross-datacentre TLS material (PEM certificates and keys), on the controller.

Used by the tls_material action (before any host changes) and by preflight (days left of
the certificates deployed on hosts). Needs the `cryptography` package, which ansible-core
itself requires on the controller (https://cryptography.io/en/latest/x509/reference/).
Private keys are read to compare their public half with the certificate's and are never
returned or put in a message.
"""

from __future__ import annotations

import datetime
import ipaddress

# Preflight fails on a certificate with fewer days left than this (renew in time).
MIN_DAYS_LEFT = 30


class TLSMaterialError(ValueError):
    """Bad TLS material; the message names the field and the value (never key bytes)."""


# Imported when used, so that importing this file (preflight does) needs no `cryptography`.
def _x509():
    from cryptography import x509

    return x509


def _serialization():
    from cryptography.hazmat.primitives import serialization

    return serialization


def load_certificate(pem, field):
    """The first certificate of PEM text or bytes; `field` names where it came from in errors."""
    x509 = _x509()
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as error:
        raise TLSMaterialError(f"{field}: not a PEM certificate ({error})") from None


def _public_bytes(public_key):
    serialization = _serialization()
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches(certificate, key_pem, key_field):
    """True when the private key in `key_pem` is the certificate's; raises on an unreadable key."""
    serialization = _serialization()
    data = key_pem.encode() if isinstance(key_pem, str) else key_pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        # The library's message may quote the input: say only which file it was.
        raise TLSMaterialError(f"{key_field}: not an unencrypted PEM private key") from None
    return _public_bytes(key.public_key()) == _public_bytes(certificate.public_key())


def days_left(certificate, now=None):
    """Whole days until the certificate's notAfter (negative once it has expired)."""
    now = now or datetime.datetime.now(datetime.UTC)
    return (certificate.not_valid_after_utc - now).days


def ip_addresses(certificate):
    """The IP addresses in the certificate's subjectAltName, as strings."""
    x509 = _x509()
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(address) for address in names.get_values_for_type(x509.IPAddress)]


def summary(certificate, now=None):
    """What a report shows of a certificate: subject, notAfter, days left, IP names."""
    return {
        "subject": certificate.subject.rfc4514_string(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "days_left": days_left(certificate, now),
        "ip_addresses": ip_addresses(certificate),
    }


def check_peer(host, ca_pem, cert_pem, key_pem, fields, address=None, min_days_left=0, now=None):
    """Problems of one router's or proxy's material: [str], each naming the field and the value.

    `fields` names the three sources ({ca, cert, key}: e.g. the inventory variable and the
    path). Checked: each parses; the key is the certificate's; the CA issued the certificate;
    the certificate has at least `min_days_left` days left; `address` (when given) is one of
    its IP subjectAltNames, which is what the tunnel's peer check matches (stunnel's checkIP).
    """
    problems = []
    try:
        ca = load_certificate(ca_pem, fields["ca"])
        certificate = load_certificate(cert_pem, fields["cert"])
    except TLSMaterialError as error:
        return [f"{host}: {error}"]
    try:
        if not key_matches(certificate, key_pem, fields["key"]):
            problems.append(
                f"{host}: {fields['key']} is not the private key of {fields['cert']} "
                f"(certificate {certificate.subject.rfc4514_string()})"
            )
    except TLSMaterialError as error:
        problems.append(f"{host}: {error}")
    from cryptography.exceptions import InvalidSignature

    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as error:
        problems.append(
            f"{host}: {fields['cert']} ({certificate.issuer.rfc4514_string()}) is not issued by "
            f"the CA {fields['ca']} ({ca.subject.rfc4514_string()}): {type(error).__name__}"
        )
    left = days_left(certificate, now)
    if left < min_days_left:
        problems.append(
            f"{host}: {fields['cert']} expires {certificate.not_valid_after_utc.date()} ({left} days left, "
            f"below {min_days_left})"
        )
    if address is not None:
        wanted = ipaddress.ip_address(address)
        if wanted not in {ipaddress.ip_address(name) for name in ip_addresses(certificate)}:
            problems.append(
                f"{host}: {fields['cert']} does not name this host's address {address} "
                f"(its IP subjectAltNames: {', '.join(ip_addresses(certificate)) or 'none'})"
            )
    return problems
