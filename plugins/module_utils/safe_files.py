"""Files that mcfleet writes as root, in places another user may reach first.

Drills and maintenance write timelines, state and reports under /tmp, /var/tmp and the
checkout. There, a file opened with open(path, "w") follows a symlink that another user
planted (CWE-59: it would truncate whatever the link points at), and a temporary name like
`path.tmp.<pid>` can be guessed and planted too (CWE-377). So:
- a directory is used only when every component of its path is owned by root or by us, and
  none is writable by others unless it is sticky (/tmp): another user cannot swap anything
  below it;
- a new file is opened with O_NOFOLLOW, and a file that is replaced is written to an
  unpredictable name (mkstemp: O_EXCL, mode 0600) in the same directory, then renamed over
  the old one (rename replaces a symlink, it does not follow it).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile

# The write bits for group and others.
OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


class UnsafePath(OSError):
    """A path another user could redirect or fill; the message names the path and why."""


def _owners():
    return {0, os.geteuid()}


def check_directory(path: str) -> str:
    """Refuses `path` (an existing directory) unless nobody but root and this user can change
    what it holds: every component, from / down, owned by root or by us (a symlink too), and
    writable by nobody else unless sticky. `path` itself must be ours, not a symlink, and
    writable by nobody else. Returns the absolute path."""
    path = os.path.abspath(path)
    parts = path.split(os.sep)
    for depth in range(1, len(parts) + 1):
        component = os.sep.join(parts[:depth]) or os.sep
        status = os.lstat(component)
        if status.st_uid not in _owners():
            raise UnsafePath(f"{component}: owned by uid {status.st_uid}, so another user controls {path}")
        if (
            stat.S_ISDIR(status.st_mode)
            and status.st_mode & OTHERS_WRITE
            and not status.st_mode & stat.S_ISVTX
        ):
            raise UnsafePath(
                f"{component}: writable by other users (mode {stat.S_IMODE(status.st_mode):04o}), "
                f"so another user can replace {path}"
            )
    status = os.lstat(path)
    if stat.S_ISLNK(status.st_mode) or not stat.S_ISDIR(status.st_mode):
        raise UnsafePath(f"{path}: not a directory (a symlink or a file is there)")
    if status.st_mode & OTHERS_WRITE:
        raise UnsafePath(f"{path}: writable by other users (mode {stat.S_IMODE(status.st_mode):04o})")
    return path


def safe_directory(path: str, mode: int = 0o755) -> str:
    """Creates `path` and its missing parents, each with exactly `mode` (a umask such as 002
    would otherwise leave them group-writable, and refused), and checks it (check_directory)."""
    path = os.path.abspath(path)
    missing = []
    component = path
    while not os.path.lexists(component):
        missing.append(component)
        component = os.path.dirname(component)
    for component in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            os.mkdir(component, mode)
            os.chmod(component, mode)
    return check_directory(path)


def open_new(path: str):
    """Opens `path` for writing text from the start (created 0644, or truncated), in a directory that
    passes safe_directory, without following a symlink at `path` (ELOOP: refused)."""
    safe_directory(os.path.dirname(os.path.abspath(path)))
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        handle = os.open(path, flags, 0o644)
    except OSError as error:
        if os.path.islink(path):
            raise UnsafePath(f"{path}: a symlink is there; refusing to write through it") from error
        raise
    return os.fdopen(handle, "w", encoding="utf-8")


def replace_file(path: str, data: str | bytes, mode: int = 0o644, directory_mode: int = 0o755) -> None:
    """Replaces `path` with `data` in one rename, so a reader sees the old file or the new one,
    never half of one; written to an unpredictable temporary name in the same directory."""
    directory = safe_directory(os.path.dirname(os.path.abspath(path)), directory_mode)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            os.fchmod(stream.fileno(), mode)
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
