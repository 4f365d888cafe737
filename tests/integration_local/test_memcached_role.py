"""Role memcached, run for real (check mode, local connection) on hosts of every supported
Debian release: what it would write to /etc/memcached.conf.

Buster cannot be started here (its images are archived), so this is the only check it
gets; bullseye to trixie are also started for real by the Molecule scenario `memcached`.
"""

import pytest
import yaml
from ansible_collections.mcfleet.fleet.tests.integration_local.role_check import (
    REPO,
    fleet_inventory,
    run_role,
)
from ansible_collections.mcfleet.fleet.tests.unit.tls_fixtures import certificate, new_key, pem_key

ROLE_DIR = REPO / "roles" / "memcached"
# Debian major release -> the memcached version its vars file names.
RELEASES = {10: "1.5.6", 11: "1.6.9", 12: "1.6.18", 13: "1.6.38"}
TLS_RELEASES = (12, 13)
CONF_TASK = "Write /etc/memcached.conf"
# Installing packages, the firewall and the service are left out: check mode on this
# machine would look at its own packages, rules and units.
SKIP = ("memcached_install", "memcached_firewall", "memcached_service")
# Who may connect: the routers' network (the role refuses a firewall that admits nobody).
SETTINGS = {"memcached_client_networks": ["192.0.2.0/24"]}
# A real certificate and its key: the preflight checks they are a pair.
_SHARD_KEY, _OTHER_KEY = new_key(), new_key()
_SHARD_CERT = certificate(_SHARD_KEY, "tls13", _SHARD_KEY).decode()
TLS = {
    "memcached_tls_enabled": True,
    "memcached_tls_ca_path": "/etc/memcached/tls/ca.pem",
    "memcached_extstore_path": "/var/lib/memcached/extstore",
    "memcached_extstore_size_mb": 2048,
    # Given, so the role installs them (this machine has no /etc/memcached/tls).
    "memcached_tls_cert_content": _SHARD_CERT,
    "memcached_tls_key_content": pem_key(_SHARD_KEY).decode(),
    "memcached_tls_ca_content": _SHARD_CERT,
}


def address(major, tls=False):
    return f"192.0.2.{major + (100 if tls else 0)}"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """{(major, tls): text of memcached.conf} for one shard per release (and TLS build)."""
    result = {}
    for major in RELEASES:
        tmp_path = tmp_path_factory.mktemp(f"debian{major}")
        shards = {f"plain{major}": {"mcfleet_address": address(major)}}
        if major in TLS_RELEASES:
            shards[f"tls{major}"] = {"mcfleet_address": address(major, tls=True), **TLS}
        run = run_role(
            tmp_path,
            "mcfleet.fleet.memcached",
            ",".join(shards),
            fleet_inventory(shards, SETTINGS),
            debian=major,
            skip_tags=SKIP,
        )
        assert run.returncode == 0, run.failures() or run.output[-3000:]
        for host in shards:
            result[(major, host.startswith("tls"))] = run.written(host, CONF_TASK)
    return result


def options(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def listeners(text):
    return [line[3:] for line in options(text) if line.startswith("-l ")]


def extended_option_names(text):
    names = []
    for line in options(text):
        if line.startswith("-o "):
            names += [item.split("=")[0] for item in line[3:].split(",")]
    return names


@pytest.mark.parametrize("major", RELEASES)
def test_core_settings_for_every_release(rendered, major):
    text = rendered[(major, False)]
    lines = options(text)
    for expected in ("-p 11211", "-U 0", "-u memcache", "-m 1024", "-c 25000", "-t 4", "-f 1.15", "-n 48"):
        assert expected in lines
    assert "-I 1024k" in lines
    assert "-Z" not in lines
    assert f"memcached {RELEASES[major]} options" in text
    # The host's model address, and no other (no loopback, no wildcard).
    assert [listener.split(":")[0] for listener in listeners(text)] == [address(major)]


@pytest.mark.parametrize("major", RELEASES)
def test_only_options_the_release_accepts(rendered, major):
    accepted = yaml.safe_load((ROLE_DIR / "vars" / f"Debian_{major}.yml").read_text())
    known = set(accepted["_memcached_release_extended_options"])
    names = extended_option_names(rendered[(major, False)])
    assert names[0] == "modern", "modern first, so explicit options after it win"
    assert set(names) <= known, f"Debian {major}: {set(names) - known} not accepted by {RELEASES[major]}"


@pytest.mark.parametrize("major", TLS_RELEASES)
def test_tls_and_extstore_where_built(rendered, major):
    text = rendered[(major, True)]
    lines = options(text)
    assert "-Z" in lines
    ours = address(major, tls=True)
    assert listeners(text) == [f"notls:{ours}:11211", f"{ours}:11214"], "the plain port stays plain"
    assert (
        "-o ssl_chain_cert=/etc/memcached/tls/cert.pem,ssl_key=/etc/memcached/tls/key.pem,"
        "ssl_ca_cert=/etc/memcached/tls/ca.pem"
    ) in lines
    assert "-o ext_path=/var/lib/memcached/extstore:2048M" in lines


@pytest.mark.parametrize("major", [10, 11])
def test_tls_is_refused_where_memcached_is_built_without_it(tmp_path, major):
    shards = {"tlsold": {"mcfleet_address": address(major), **TLS}}
    run = run_role(
        tmp_path,
        "mcfleet.fleet.memcached",
        "tlsold",
        fleet_inventory(shards, SETTINGS),
        debian=major,
        skip_tags=SKIP,
    )
    assert run.returncode != 0
    message = run.failures().get("tlsold", "")
    assert f"memcached {RELEASES[major]} on Debian {major}" in message
    assert "TLS not built" in message
    assert CONF_TASK not in run.tasks.get("tlsold", {}), "refused before writing anything"


def refused_before_any_change(tmp_path, host, tls):
    """The role's failure message for one Debian 13 shard with `tls`, once no task has changed anything."""
    shards = {host: {"mcfleet_address": address(13), **tls}}
    run = run_role(
        tmp_path,
        "mcfleet.fleet.memcached",
        host,
        fleet_inventory(shards, SETTINGS),
        debian=13,
        skip_tags=SKIP,
    )
    assert run.returncode != 0
    changed = [name for name, result in run.tasks.get(host, {}).items() if result.get("changed")]
    assert changed == [], f"refused before any change, but {changed} changed"
    return run.failures().get(host, "")


def test_tls_without_certificate_or_key_anywhere_is_refused_before_any_change(tmp_path):
    tls = {key: value for key, value in TLS.items() if not key.endswith("_content")}
    tls["memcached_tls_cert_path"] = str(tmp_path / "absent-cert.pem")
    tls["memcached_tls_key_path"] = str(tmp_path / "absent-key.pem")
    message = refused_before_any_change(tmp_path, "tlsbare", tls)
    assert f"memcached_tls_cert_path={tmp_path}/absent-cert.pem is not on the host" in message
    assert f"memcached_tls_key_path={tmp_path}/absent-key.pem is not on the host" in message
    assert "memcached_tls_ca_path=/etc/memcached/tls/ca.pem is not on the host" in message


def test_a_key_that_is_not_the_certificates_is_refused_before_any_change(tmp_path):
    tls = {**TLS, "memcached_tls_key_content": pem_key(_OTHER_KEY).decode()}
    message = refused_before_any_change(tmp_path, "tlspair", tls)
    assert (
        "memcached_tls_key_content is not the private key of memcached_tls_cert_content (CN=tls13)" in message
    )
    assert "BEGIN" not in message, "the message shows no PEM text"
