"""TLS material checks with real keys and certificates made by `cryptography` here."""

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils import tls_material
from ansible_collections.mcfleet.fleet.tests.unit.tls_fixtures import NOW, certificate, new_key, pem_key

FIELDS = {
    "ca": "mcfleet_tls_ca_file /ca.pem",
    "cert": "mcfleet_tls_cert_file /p.pem",
    "key": "mcfleet_tls_key_file /p.key",
}


def proxy_certificate(material, **choices):
    """A certificate for mwproxy2001's key, issued by the lab CA of `material`."""
    return certificate(material["proxy_key"], "mwproxy2001", material["ca_key"], "lab-ca", **choices)


@pytest.fixture(scope="module")
def material():
    ca_key, proxy_key = new_key(), new_key()
    return {
        "ca_key": ca_key,
        "ca": certificate(ca_key, "lab-ca", ca_key, ca=True),
        "key": pem_key(proxy_key),
        "proxy_key": proxy_key,
        "cert": certificate(proxy_key, "mwproxy2001", ca_key, "lab-ca", address="10.0.2.30"),
    }


def check(material, **overrides):
    parts = {**material, **overrides}
    return tls_material.check_peer(
        "mwproxy2001",
        parts["ca"],
        parts["cert"],
        parts["key"],
        FIELDS,
        address="10.0.2.30",
        min_days_left=30,
        now=NOW,
    )


def test_good_material_has_no_problem(material):
    assert check(material) == []
    summary = tls_material.summary(tls_material.load_certificate(material["cert"], "cert"), now=NOW)
    assert summary["ip_addresses"] == ["10.0.2.30"]
    assert summary["days_left"] == 365


def test_a_key_that_is_not_the_certificates(material):
    problems = check(material, key=pem_key(new_key()))
    assert problems == [
        "mwproxy2001: mcfleet_tls_key_file /p.key is not the private key of mcfleet_tls_cert_file /p.pem "
        "(certificate CN=mwproxy2001)"
    ]


def test_a_certificate_of_another_ca(material):
    other = new_key()
    cert = certificate(material["proxy_key"], "mwproxy2001", other, "other-ca", address="10.0.2.30")
    (problem,) = check(material, cert=cert)
    assert "is not issued by the CA mcfleet_tls_ca_file /ca.pem (CN=lab-ca)" in problem


def test_a_certificate_close_to_expiry(material):
    cert = proxy_certificate(material, days=10, address="10.0.2.30")
    (problem,) = check(material, cert=cert)
    assert problem.startswith(
        "mwproxy2001: mcfleet_tls_cert_file /p.pem expires 2026-12-10 (10 days left, below 30)"
    )


def test_a_certificate_without_the_proxys_address(material):
    cert = proxy_certificate(material, address="10.0.2.99")
    (problem,) = check(material, cert=cert)
    assert "does not name this host's address 10.0.2.30 (its IP subjectAltNames: 10.0.2.99)" in problem


def test_unreadable_files_are_named_without_their_content(material):
    assert check(material, cert=b"nonsense")[0].startswith(
        "mwproxy2001: mcfleet_tls_cert_file /p.pem: not a PEM certificate"
    )
    (problem,) = check(material, key=b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    assert problem == "mwproxy2001: mcfleet_tls_key_file /p.key: not an unencrypted PEM private key"
    assert "c2VjcmV0" not in problem


def test_preflight_fails_on_a_certificate_with_under_30_days_left(material):
    import base64

    from ansible_collections.mcfleet.fleet.plugins.module_utils.preflight import FAIL, OK, certificates_row

    def slurped(pem):
        return {"content": base64.b64encode(pem).decode(), "encoding": "base64"}

    short = proxy_certificate(material, days=29, address="10.0.2.30")
    row = certificates_row("mwproxy2001", {"/etc/mcfleet/tls/ca.pem": slurped(material["ca"])}, now=NOW)
    assert (row["status"], row["detail"]) == (OK, "valid for /etc/mcfleet/tls/ca.pem 365 days")
    row = certificates_row(
        "mwproxy2001",
        {
            "/etc/mcfleet/tls/cert.pem": slurped(short),
            "/etc/mcfleet/tls/ca.pem": slurped(material["ca"]),
            "/etc/gone.pem": {"failed": True, "msg": "file not found: /etc/gone.pem"},
        },
        now=NOW,
    )
    assert row["status"] == FAIL
    assert row["detail"] == (
        "/etc/gone.pem: not read: file not found: /etc/gone.pem; /etc/mcfleet/tls/cert.pem expires "
        "2026-12-29: 29 days left, under 30; renew it"
    )
