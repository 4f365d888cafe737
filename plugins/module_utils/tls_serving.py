"""The certificate a memcached TLS listener serves, and a renewed one taken into use without a restart.

memcached loads its certificate, key and CA again on the text command `refresh_certs`
(memcached's proto_text.c, process_refresh_certs_command; tls.c, refresh_certs), so a renewed
certificate costs no restart and no cache. Checked on 1.6.18: the reload runs as the
unprivileged user memcached has switched to, not as root, and a reload that fails half way
(the new certificate loaded, then the key unreadable or not the certificate's) leaves the
listener refusing every handshake until a good reload. Hence `material_problems`, run before
the command: the files must be readable by that user and be a certificate and its key.

Runs on the memcached host, with the standard library only (`ssl`, no `cryptography`).
Private keys are loaded by OpenSSL to check them and never read into Python.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pathlib
import pwd
import socket
import ssl
import stat

PEM_CERTIFICATE_BEGIN = "-----BEGIN CERTIFICATE-----"
PEM_CERTIFICATE_END = "-----END CERTIFICATE-----"


class TLSServingError(Exception):
    """A file or listener could not be read; the message names the path or the address."""


def leaf_der(cert_path):
    """The first certificate of a PEM file (memcached's ssl_chain_cert: the leaf first), as DER."""
    try:
        with open(cert_path, encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError as error:
        raise TLSServingError(f"{cert_path}: {error.strerror}") from None
    start = text.find(PEM_CERTIFICATE_BEGIN)
    end = text.find(PEM_CERTIFICATE_END, start)
    if start < 0 or end < 0:
        raise TLSServingError(f"{cert_path}: no PEM certificate in it")
    try:
        return ssl.PEM_cert_to_DER_cert(text[start : end + len(PEM_CERTIFICATE_END)] + "\n")
    except ValueError as error:
        raise TLSServingError(f"{cert_path}: not a PEM certificate ({error})") from None


def fingerprint(der):
    """SHA-256 of a DER certificate, as `openssl x509 -fingerprint -sha256` prints it."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return "SHA256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def served_der(address, port, timeout_s):
    """The certificate memcached's TLS listener presents now, as DER (no verification: only read)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((address, int(port)), timeout=timeout_s) as raw,
            context.wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as error:
        raise TLSServingError(f"{address}:{port}: no TLS handshake ({error})") from None
    if not der:
        raise TLSServingError(f"{address}:{port}: the listener presented no certificate")
    return der


def _readable_by(path, uid, gids):
    """Why `uid` (with groups `gids`) cannot read `path`, or None: the file and every parent directory."""
    path = os.path.abspath(path)
    directories = [str(parent) for parent in pathlib.PurePath(path).parents]
    checks = [(directory, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH, "search") for directory in directories]
    checks.append((path, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH, "read"))
    for checked, user_bit, group_bit, other_bit, what in checks:
        try:
            info = os.stat(checked)
        except OSError as error:
            return f"{checked}: {error.strerror}"
        if uid == 0:
            continue
        if info.st_uid == uid:
            allowed = info.st_mode & user_bit
        elif info.st_gid in gids:
            allowed = info.st_mode & group_bit
        else:
            allowed = info.st_mode & other_bit
        if not allowed:
            owner = _name(pwd.getpwuid, info.st_uid)
            group = _name(grp.getgrgid, info.st_gid)
            return f"{checked} ({owner}:{group}, mode {stat.S_IMODE(info.st_mode):04o}) denies {what}"
    return None


def _name(lookup, number):
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def material_problems(cert_path, key_path, ca_path, user):
    """What would make `refresh_certs` fail for memcached running as `user`: [str], each naming the file."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return [f"user={user}: no such user on this host"]
    gids = set(os.getgrouplist(user, account.pw_gid))
    paths = {"cert_path": cert_path, "key_path": key_path}
    if ca_path:
        paths["ca_path"] = ca_path
    problems = []
    for field, path in paths.items():
        denied = _readable_by(path, account.pw_uid, gids)
        if denied:
            problems.append(f"{field}={path}: not readable by {user}, whom memcached reloads as: {denied}")
    if problems:
        return problems
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as error:
        problems.append(
            f"cert_path={cert_path}, key_path={key_path}: not a certificate and its key ({error})"
        )
    if ca_path:
        try:
            context.load_verify_locations(cafile=ca_path)
        except (OSError, ssl.SSLError) as error:
            problems.append(f"ca_path={ca_path}: not a PEM CA certificate ({error})")
    return problems


def listening(address, port, timeout_s):
    """True when something accepts TCP connections on address:port."""
    with contextlib.suppress(OSError), socket.create_connection((address, int(port)), timeout=timeout_s):
        return True
    return False
