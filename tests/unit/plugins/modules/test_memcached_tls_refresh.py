"""mcfleet.fleet.memcached_tls_refresh against a real memcached with TLS (the host's, 1.6.18).

A renewed certificate is taken into use by refresh_certs: same process, same items, the new
certificate presented. Bad material is refused before memcached is asked, and memcached
keeps presenting the certificate it had.
"""

import json
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import MemcacheClient
from ansible_collections.mcfleet.fleet.plugins.module_utils.tls_serving import (
    fingerprint,
    leaf_der,
    served_der,
)
from ansible_collections.mcfleet.fleet.plugins.modules import memcached_tls_refresh as module
from ansible_collections.mcfleet.fleet.tests.unit.failover_fixtures import MEMCACHED, free_port, wait_for_port
from ansible_collections.mcfleet.fleet.tests.unit.tls_fixtures import certificate, new_key, pem_key

# memcached drops root for this user, as Debian's runs as memcache.
USER = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def pair(name):
    key = new_key()
    return certificate(key, name, key), pem_key(key)


class TLSFiles:
    """cert.pem and key.pem in a directory memcached's user can search, installed like the role does."""

    def __init__(self, directory):
        self.directory = directory
        self.cert = os.path.join(directory, "cert.pem")
        self.key = os.path.join(directory, "key.pem")

    def install(self, cert_pem, key_pem, key_mode=0o640):
        with open(self.cert, "wb") as handle:
            handle.write(cert_pem)
        os.chmod(self.cert, 0o644)
        with open(self.key, "wb") as handle:
            handle.write(key_pem)
        if os.geteuid() == 0:
            os.chown(self.key, 0, pwd.getpwnam(USER).pw_gid)
        os.chmod(self.key, key_mode)


@pytest.fixture(name="tls_memcached")
def fixture_tls_memcached():
    directory = tempfile.mkdtemp(prefix="mcfleet-tls-")
    os.chmod(directory, 0o711)
    files = TLSFiles(directory)
    files.install(*pair("shard-first"))
    port, tls_port = free_port(), free_port()
    argv = [MEMCACHED, "-U", "0", "-m", "16", "-t", "1", "-p", str(port)]
    argv += ["-l", f"notls:127.0.0.1:{port}", "-l", f"127.0.0.1:{tls_port}"]
    argv += ["-Z", "-o", f"ssl_chain_cert={files.cert},ssl_key={files.key}"]
    argv += ["-u", USER] if os.geteuid() == 0 else []
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        yield {"files": files, "port": port, "tls_port": tls_port, "process": process}
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(directory)


def run(capsys, server, check_mode=False, **overrides):
    args = {
        "address": "127.0.0.1",
        "port": server["port"],
        "tls_port": server["tls_port"],
        "cert_path": server["files"].cert,
        "key_path": server["files"].key,
        "user": USER,
        "_ansible_check_mode": check_mode,
        "_ansible_diff": True,
    }
    args.update(overrides)
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        module.main()
    result = json.loads(capsys.readouterr().out)
    result["rc"] = exited.value.code
    return result


def presented(server):
    return fingerprint(served_der("127.0.0.1", server["tls_port"], 5.0))


def test_a_renewed_certificate_is_served_by_the_same_memcached_with_its_items(capsys, tls_memcached):
    server = tls_memcached
    first = presented(server)
    unchanged = run(capsys, server)
    assert (unchanged["rc"], unchanged["changed"], unchanged["served_before"]) == (0, False, first)

    with MemcacheClient("127.0.0.1", server["port"]) as client:
        assert client.set("kept:1", b"warm")
    server["files"].install(*pair("shard-renewed"))
    renewed = fingerprint(leaf_der(server["files"].cert))

    checked = run(capsys, server, check_mode=True)
    assert (checked["rc"], checked["changed"]) == (0, True)
    assert checked["diff"]["before"] == f"{first}\n" and checked["diff"]["after"] == f"{renewed}\n"
    assert presented(server) == first, "check mode sent refresh_certs"

    applied = run(capsys, server)
    assert (applied["rc"], applied["changed"]) == (0, True), applied
    assert (applied["served_before"], applied["served_after"]) == (first, renewed)
    assert presented(server) == renewed
    assert server["process"].poll() is None, "memcached was restarted or died"
    with MemcacheClient("127.0.0.1", server["port"]) as client:
        assert client.get("kept:1") == b"warm"

    again = run(capsys, server)
    assert (again["rc"], again["changed"]) == (0, False)


def test_a_key_that_is_not_the_certificates_is_refused_before_memcached_is_asked(capsys, tls_memcached):
    server = tls_memcached
    first = presented(server)
    other_cert = pair("shard-other")[0]
    renewed_key = pair("shard-renewed")[1]
    server["files"].install(other_cert, renewed_key)
    refused = run(capsys, server)
    assert refused["rc"] == 1 and refused["changed"] is False
    assert refused["msg"].startswith(f"refresh_certs not sent; memcached still presents {first}")
    assert f"key_path={server['files'].key}: not a certificate and its key" in refused["msg"]
    # memcached 1.6.18 refuses every handshake after a reload that failed half way: not asked,
    # it still presents the certificate it had.
    assert presented(server) == first


@pytest.mark.skipif(os.geteuid() != 0, reason="memcached drops to another user only when started as root")
def test_a_key_only_root_can_read_is_refused_naming_the_file_and_its_mode(capsys, tls_memcached):
    server = tls_memcached
    first = presented(server)
    server["files"].install(*pair("shard-renewed"), key_mode=0o600)
    refused = run(capsys, server)
    assert refused["rc"] == 1
    assert (
        f"key_path={server['files'].key}: not readable by {USER}, whom memcached reloads as" in refused["msg"]
    )
    assert "mode 0600) denies read" in refused["msg"]
    assert presented(server) == first


def test_a_memcached_that_is_not_running_is_left_alone(capsys, tls_memcached):
    server = tls_memcached
    server["process"].kill()
    server["process"].wait()
    result = run(capsys, server)
    assert (result["rc"], result["changed"], result["running"]) == (0, False, False)
    assert "loads the files when it starts" in result["msg"]
