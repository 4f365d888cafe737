"""Carry memcached's restartable cache across a reboot.

memcached -e keeps its cache in a memory file on a tmpfs, and on SIGUSR1 writes the file's
metadata beside it (<file>.meta) before it exits; the next start on the same file takes the
items back (the memcached wiki's WarmRestart page; _mc_meta_load_cb in memcached.c). A tmpfs does
not outlive a reboot, so an in-place upgrade copies both files to disk before it and back after.

The copy reads the whole file and leaves its zero blocks as holes on disk: memcached fills slab
pages as it uses them, so a cache that is not full takes less than its size on disk. The disk
copy is marked with the run that made it, and only that run restores it: a copy left behind by
an earlier window holds values the routers have since replaced.
"""

from __future__ import annotations

import contextlib
import os
import time

MARGIN_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
RUN_MARK = "carried-by"
ZEROS = bytes(CHUNK_BYTES)


class CarryError(Exception):
    """The cache cannot be carried for a reason the operator must see (not a cold fallback)."""


def _pair(memory_file):
    # .meta last: memcached writes it after the memory file, and it alone makes a start warm.
    return [memory_file, f"{memory_file}.meta"]


def _allocated(path):
    status = os.stat(path, follow_symlinks=False)
    return status.st_blocks * 512


def _free(directory):
    status = os.statvfs(directory)
    return status.f_bavail * status.f_frsize


def _copy_sparse(source, target, uid=None, gid=None):
    """Copy source to target (written to target.partial, then renamed), leaving zero blocks as
    holes; neither end follows a symbolic link. Returns (apparent size, bytes written)."""
    partial = f"{target}.partial"
    source_fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if os.path.lexists(partial):
            os.unlink(partial)
        target_fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        written = 0
        try:
            size = os.fstat(source_fd).st_size
            while True:
                chunk = os.read(source_fd, CHUNK_BYTES)
                if not chunk:
                    break
                if chunk == ZEROS[: len(chunk)]:
                    os.lseek(target_fd, len(chunk), os.SEEK_CUR)
                    continue
                written += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(target_fd, view) :]
            os.ftruncate(target_fd, size)
            if uid is not None:
                os.fchown(target_fd, uid, gid)
            os.fsync(target_fd)
        finally:
            os.close(target_fd)
    finally:
        os.close(source_fd)
    os.replace(partial, target)
    return size, written


def _store_dir(store):
    """Create the store (root's, 0700) or check the one there is: a directory, not a link,
    owned by this user, writable by nobody else."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(store, 0o700)
    status = os.lstat(store)
    if not os.path.isdir(store) or os.path.islink(store):
        raise CarryError(f"store={store}: not a directory")
    if status.st_uid != os.geteuid() or status.st_mode & 0o022:
        raise CarryError(f"store={store}: owned by uid {status.st_uid} or writable by others; refused")


def _clear(store, memory_file):
    name = os.path.basename(memory_file)
    removed = False
    for path in [os.path.join(store, RUN_MARK)] + [
        os.path.join(store, os.path.basename(p)) for p in _pair(name)
    ]:
        for candidate in (path, f"{path}.partial"):
            if os.path.lexists(candidate):
                os.unlink(candidate)
                removed = True
    return removed


def _rate(size, seconds):
    return round(size / 1e6 / seconds, 1) if seconds > 0 else None


def save(memory_file, store, run_id, check_mode=False, clock=time.monotonic):
    """Copy the saved cache (memory_file and its .meta) into `store`, marked with run_id.

    {saved: False, why} when there is nothing to carry (memcached left no .meta) or too little
    room: the upgrade then returns cold. Any copy an earlier window left is removed first.
    """
    result = {"saved": False, "bytes": 0, "written": 0, "allocated": 0, "seconds": 0.0, "rate_mb_s": None}
    result["why"] = ""
    if not os.path.isfile(f"{memory_file}.meta") or not os.path.isfile(memory_file):
        result["why"] = f"memcached saved no cache ({memory_file}.meta is missing): it restarts cold"
        return result
    allocated = sum(_allocated(path) for path in _pair(memory_file))
    result["allocated"] = allocated
    if check_mode:
        result.update(saved=True, why=f"would copy {allocated // 2**20} MiB to {store}")
        return result
    _store_dir(store)
    _clear(store, memory_file)
    free = _free(store)
    if free < allocated + MARGIN_BYTES:
        needed = (allocated + MARGIN_BYTES) // 2**20
        result["why"] = f"{store} has {free // 2**20} MiB free, the cache needs {needed} MiB: a cold restart"
        return result
    started = clock()
    copied = [_copy_sparse(path, os.path.join(store, os.path.basename(path))) for path in _pair(memory_file)]
    seconds = clock() - started
    _write_mark(store, run_id)
    size, written = (sum(column) for column in zip(*copied, strict=True))
    result.update(
        saved=True,
        bytes=size,
        written=written,
        seconds=round(seconds, 3),
        rate_mb_s=_rate(size, seconds),
        why=f"{size // 2**20} MiB read, {written // 2**20} MiB of it not zero, copied to {store}",
    )
    return result


def _write_mark(store, run_id):
    path = os.path.join(store, RUN_MARK)
    descriptor = os.open(f"{path}.partial", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as mark:
        mark.write(run_id)
    os.replace(f"{path}.partial", path)


def _read_mark(store):
    try:
        descriptor = os.open(os.path.join(store, RUN_MARK), os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(descriptor) as mark:
        return mark.read()


def restore(memory_file, store, run_id, uid, gid, check_mode=False, clock=time.monotonic):
    """Copy the cache run_id saved in `store` back beside memory_file, owned by uid:gid, then
    remove the disk copy. {restored: False, why} when store holds no copy of this run."""
    result = {"restored": False, "bytes": 0, "written": 0, "seconds": 0.0, "rate_mb_s": None, "why": ""}
    name = os.path.basename(memory_file)
    copies = [os.path.join(store, os.path.basename(path)) for path in _pair(name)]
    mark = _read_mark(store) if os.path.isdir(store) else None
    if mark != run_id or not all(os.path.isfile(path) for path in copies):
        result["why"] = f"{store} holds no cache saved by run {run_id} (found {mark!r}): it restarts cold"
        return result
    target_dir = os.path.dirname(memory_file)
    if not os.path.isdir(target_dir):
        raise CarryError(f"memory_file={memory_file}: {target_dir} does not exist (is its tmpfs mounted?)")
    allocated = sum(_allocated(path) for path in copies)
    free = _free(target_dir)
    if free < allocated:
        raise CarryError(
            f"memory_file={memory_file}: {target_dir} has {free // 2**20} MiB free, the saved cache takes "
            f"{allocated // 2**20} MiB"
        )
    if check_mode:
        result.update(restored=True, why=f"would copy {allocated // 2**20} MiB back from {store}")
        return result
    started = clock()
    targets = [os.path.join(target_dir, os.path.basename(copy)) for copy in copies]
    copied = [_copy_sparse(copy, target, uid, gid) for copy, target in zip(copies, targets, strict=True)]
    seconds = clock() - started
    _clear(store, memory_file)
    size, written = (sum(column) for column in zip(*copied, strict=True))
    result.update(
        restored=True,
        bytes=size,
        written=written,
        seconds=round(seconds, 3),
        rate_mb_s=_rate(size, seconds),
        why=f"{size // 2**20} MiB copied back from {store}",
    )
    return result
