"""One maintenance or drill run per datacentre: a lock held as a JSON file on a datacentre host.

Every controller reaches the same host, so every controller sees the same lock. The record:

    {"id": run id, "datacentre", "kind" (e.g. "maintenance restart", "drill"),
     "holder": {"controller": controller hostname, "user": user name}, "reason",
     "started_at", "refreshed_at", "expires_at" (Unix time, float),
     "broken": null, or {"lock": the record taken over, "reason", "broken_at"}}

A lock binds until expires_at; after that any run may take it over, so a controller that died
never blocks the datacentre for longer than the TTL it asked for.

A file that cannot be read as a lock record (a torn write from an older tool, a hand edit,
a disk that filled up) counts as an expired lock: read() returns {"unreadable": True, ...}
naming the path and the error, acquisition replaces it, and release leaves it alone (it is
nobody's to release, and it binds no one).

decide() and release() are pure (the time is passed in); acquire_lock() and release_lock()
do the file work. Read-decide-write runs under fcntl.flock on a sibling `<path>.guard`, so two
controllers racing on the same host cannot both win. The guard file is never removed: a
process blocked on the old inode would otherwise lock a file nobody else sees.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from ansible_collections.mcfleet.fleet.plugins.module_utils.safe_files import replace_file, safe_directory

DEFAULT_PATH = "/var/lib/mcfleet/maintenance.lock"
MAX_TTL_S = 86400
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]+$")
GUARD_SUFFIX = ".guard"


class MaintenanceLockError(Exception):
    """A bad request or an unusable lock path: stops the module with a clear message."""


# --- validation --------------------------------------------------------------------------


def validate_ttl(ttl_s):
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 0 < ttl_s <= MAX_TTL_S:
        raise MaintenanceLockError(f"ttl_s={ttl_s!r}: must be an integer from 1 to {MAX_TTL_S}")


def validate_run_id(run_id):
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise MaintenanceLockError(
            f"id={run_id!r}: must be a non-empty string of letters, digits and . _ : - only"
        )


def validate_path(path):
    if not isinstance(path, str) or not os.path.isabs(path) or path.endswith("/"):
        raise MaintenanceLockError(f"path={path!r}: must be an absolute path to a file")


@dataclass(frozen=True)
class LockRequest:
    """What a run asks for; fields left None keep the held record's values on a refresh."""

    run_id: str
    ttl_s: int
    datacentre: str | None = None
    kind: str | None = None
    reason: str | None = None
    controller: str | None = None
    user: str | None = None
    break_reason: str = ""


def validate_request(run_id, ttl_s, **fields):
    validate_run_id(run_id)
    validate_ttl(ttl_s)
    # Whitespace alone is no reason to break somebody's lock.
    fields["break_reason"] = (fields.get("break_reason") or "").strip()
    return LockRequest(run_id, ttl_s, **fields)


# --- time and wording ----------------------------------------------------------------------


def utc_iso(epoch):
    # timezone.utc, not datetime.UTC: bullseye hosts run this with Python 3.9.
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: UP017


def is_expired(record, now):
    return bool(record.get("unreadable")) or now >= record["expires_at"]


def _given(value):
    return repr(value) if value else "unknown"


def describe(record):
    """The holder in one phrase: run id, kind, datacentre, user, controller, reason, start."""
    holder = record.get("holder") or {}
    return (
        f"run {record['id']!r} ({record.get('kind') or 'kind unknown'}"
        f" in datacentre {_given(record.get('datacentre'))})"
        f" by user {_given(holder.get('user'))} on controller {_given(holder.get('controller'))},"
        f" reason {_given(record.get('reason'))}, started {utc_iso(record['started_at'])}"
    )


def refusal_message(current, now):
    remaining = max(0, int(current["expires_at"] - now))
    return (
        f"maintenance lock held by {describe(current)}; it expires {utc_iso(current['expires_at'])}"
        f" (in {remaining}s). Wait until that run releases it or it expires; if that run is dead,"
        " take the lock over by setting break_reason (why breaking it is safe)"
    )


# --- records -----------------------------------------------------------------------------


def new_record(request, now, broken=None):
    return {
        "id": request.run_id,
        "datacentre": request.datacentre,
        "kind": request.kind,
        "holder": {"controller": request.controller, "user": request.user},
        "reason": request.reason,
        "started_at": now,
        "refreshed_at": now,
        "expires_at": now + request.ttl_s,
        "broken": broken,
    }


def refreshed_record(current, request, now):
    """The same run again: started_at and any broken-lock note stay, expiry moves on."""
    record = dict(current)
    for field in ("datacentre", "kind", "reason"):
        if getattr(request, field) is not None:
            record[field] = getattr(request, field)
    holder = dict(current.get("holder") or {})
    for field in ("controller", "user"):
        if getattr(request, field) is not None:
            holder[field] = getattr(request, field)
    record["holder"] = holder
    record["refreshed_at"] = now
    record["expires_at"] = now + request.ttl_s
    return record


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_record(text):
    """The record in text, or the reason it is not one (ValueError)."""
    record = json.loads(text)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if not isinstance(record.get("id"), str) or not record["id"]:
        raise ValueError("no run id")
    for field in ("started_at", "expires_at"):
        if not _number(record.get(field)):
            raise ValueError(f"{field} is not a number")
    if not isinstance(record.get("holder") or {}, dict):
        raise ValueError("holder is not a JSON object")
    return record


def read(path):
    """The lock record at path; None when there is no lock; an `unreadable` record when the
    file holds no valid record (it counts as expired). Other read errors raise."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        # Not a lock we can judge (a directory, no permission): guessing "expired" could break it.
        raise MaintenanceLockError(f"cannot read the maintenance lock {path}: {error}") from None
    if not data.strip():
        return {"unreadable": True, "path": path, "error": "empty file"}
    try:
        # UnicodeDecodeError and JSONDecodeError are ValueErrors too.
        return parse_record(data.decode("utf-8"))
    except ValueError as error:
        return {"unreadable": True, "path": path, "error": str(error)}


# --- decisions (pure) ----------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """acquire (refresh=True when the same run renews it), break, or refuse.

    record is what to write (None on a refusal); message names what was replaced, or why refused."""

    action: str
    record: dict | None
    message: str = ""
    refresh: bool = False

    @property
    def outcome(self):
        if self.refresh:
            return "refreshed"
        return {"acquire": "acquired", "break": "broken", "refuse": "refused"}[self.action]


def decide(current, request, now):
    if current is None:
        return Decision("acquire", new_record(request, now))
    if current.get("unreadable"):
        return Decision(
            "acquire",
            new_record(request, now),
            f"replaced an unreadable lock file {current.get('path', '')} ({current.get('error')})",
        )
    # Same id: the same run renews its lock, even once it has expired, and stays the same run.
    if current["id"] == request.run_id:
        return Decision("acquire", refreshed_record(current, request, now), refresh=True)
    if is_expired(current, now):
        return Decision(
            "acquire",
            new_record(request, now),
            f"took over the lock of {describe(current)}, which expired {utc_iso(current['expires_at'])}",
        )
    if request.break_reason:
        previous = {key: value for key, value in current.items() if key != "broken"}
        broken = {"lock": previous, "reason": request.break_reason, "broken_at": now}
        return Decision(
            "break",
            new_record(request, now, broken),
            f"broke the lock of {describe(current)}: {request.break_reason}",
        )
    return Decision("refuse", None, refusal_message(current, now))


@dataclass(frozen=True)
class ReleaseDecision:
    """release (remove the file), absent (nothing of this run's to remove), or refuse."""

    action: str
    message: str = ""

    @property
    def outcome(self):
        return {"release": "released", "absent": "absent", "refuse": "refused"}[self.action]


def release(current, run_id, now=None):
    """Only the holder removes its lock. now, if given, only adds the expiry to a refusal."""
    if current is None:
        return ReleaseDecision("absent")
    if current.get("unreadable"):
        return ReleaseDecision(
            "absent",
            f"the lock file {current.get('path', '')} is unreadable ({current.get('error')}); "
            "left in place: it binds no one and the next acquisition replaces it",
        )
    if current["id"] == run_id:
        return ReleaseDecision("release")
    expiry = ""
    if now is not None:
        state = "expired" if is_expired(current, now) else "expires"
        expiry = f" ({state} {utc_iso(current['expires_at'])})"
    return ReleaseDecision(
        "refuse",
        f"run {run_id!r} cannot release the maintenance lock: it is held by {describe(current)}{expiry}",
    )


# --- files -------------------------------------------------------------------------------


def fsync_directory(directory):
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def ensure_directory(path):
    # Created 0700 where missing; an existing one is checked (safe_files), not changed.
    safe_directory(os.path.dirname(path), 0o700)


def write_record(path, record):
    """Replace path with record in one rename: a reader sees the old lock or the new one."""
    directory = os.path.dirname(path)
    # Serialised first, so a record that cannot be written leaves no temporary file behind.
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    replace_file(path, text, mode=0o600, directory_mode=0o700)
    # The rename itself is durable only once the directory is synced.
    fsync_directory(directory)


def remove_record(path):
    os.unlink(path)
    fsync_directory(os.path.dirname(path))


@contextlib.contextmanager
def guarded(path):
    """Holds an exclusive flock on <path>.guard; closing the descriptor releases it."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    descriptor = os.open(path + GUARD_SUFFIX, flags, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


@dataclass(frozen=True)
class Outcome:
    """What a call did (or, in check mode, would do).

    action: acquired, refreshed, broken, released, absent or refused. before is the record found,
    after the record on the host once done (the other run's after a refusal)."""

    action: str
    changed: bool
    before: dict | None
    after: dict | None
    message: str = ""

    @property
    def failed(self):
        return self.action == "refused"


def acquire_lock(path, request, check_mode=False, now=None):
    """Take, renew or break the lock for request; in check mode only decide."""
    validate_path(path)

    def settle():
        current = read(path)
        return current, decide(current, request, time.time() if now is None else now)

    if check_mode:
        current, decision = settle()
    else:
        ensure_directory(path)
        with guarded(path):
            current, decision = settle()
            if decision.record is not None:
                write_record(path, decision.record)
    if decision.record is None:
        return Outcome("refused", False, current, current, decision.message)
    return Outcome(decision.outcome, True, current, decision.record, decision.message)


def release_lock(path, run_id, check_mode=False, now=None):
    """Remove the lock if run_id holds it; in check mode only decide."""
    validate_path(path)
    validate_run_id(run_id)
    moment = time.time() if now is None else now
    current = read(path)
    decision = release(current, run_id, moment)
    # Only a lock that looks like this run's needs the guard (so a release with nothing to release
    # creates no file): the verdict is taken again under it, in case another run broke the lock.
    if decision.action == "release" and not check_mode:
        with guarded(path):
            current = read(path)
            decision = release(current, run_id, moment)
            if decision.action == "release":
                remove_record(path)
    # After "absent" an unreadable file may stay on disk, but it is no lock anybody holds.
    held = current if decision.action == "refuse" else None
    return Outcome(decision.outcome, decision.action == "release", current, held, decision.message)
