"""A shard's stale-safe return: the routers' failover journals, replayed as deletes.

While a shard is out, its routers send its keys to the gutter, and the shard keeps whatever it
held. A shard that comes back holding data (a warm restart, a drill that keeps its cache) would
serve those old values for every key clients set or deleted meanwhile: mcrouter's open issue
"Gutter pool and stale data" (facebook/mcrouter#202). The gutter cannot say which keys those are
once its short TTL has expired them, so each router journals them itself: routes.lua's
route_mcfleet_journal appends "<unix time> <command> <key>" for every request that may change a
key on the gutter side of a failover. Facebook replays deletes from a log in the same way
("Scaling Memcache at Facebook", NSDI'13, section 3.3 and 4.3, mcsqueal).

Three passes, each a delete of journalled keys on the returning shard (a delete never makes a
cache wrong: at worst it costs one miss):
1. before the block lifts, every key journalled since the window began (shard_invalidate);
2. from the unblock until its router holds the shard healthy again, on each router host, every
   key as soon as it is journalled (`follow`, the module rejoin_follow). Until a router
   re-admits the shard it keeps sending the shard's writes to the gutter; the follower, on the
   router's own host, reaches the shard as soon as the block lifts, well before the router's
   next retry, and then deletes each new key within one poll (20 ms);
3. once every router holds it healthy, whatever is left (shard_invalidate again).
What remains is a write a router journals in the last poll before it re-admits the shard and a
read of the same key in the next: a window of milliseconds, measured (README) not closed.
"""

from __future__ import annotations

import os
import time
from collections import deque

from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import (
    MemcacheClient,
    MemcacheError,
)

# A journal line: "<unix time> <command> <key>"; memcached keys hold no whitespace.
MAX_LINE_BYTES = 512
# More keys than this to delete: emptying the shard is quicker and as safe.
DEFAULT_FLUSH_OVER = 200_000


class JournalError(Exception):
    """The journal cannot be read safely; the message names the path and why."""


def read_journal(path: str, since: float = 0.0, offset: int = 0, max_keys: int = DEFAULT_FLUSH_OVER) -> dict:
    """The distinct keys journalled at or after `since` (whole seconds, as journalled), from
    byte `offset` on.

    Returns {keys, records, offset (where the next read starts: after the last whole line),
    exists, truncated (more than max_keys distinct keys: the caller empties the shard instead),
    malformed}. A journal emptied since `offset` was taken is read from its start.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {"keys": [], "records": 0, "offset": 0, "exists": False, "truncated": False, "malformed": 0}
    except OSError as error:
        raise JournalError(f"{path}: {error.strerror}") from error
    with os.fdopen(descriptor, "rb") as journal:
        size = os.fstat(journal.fileno()).st_size
        start = offset if 0 <= offset <= size else 0
        journal.seek(start)
        data = journal.read(size - start)
    whole = data.rfind(b"\n") + 1
    keys: dict[str, None] = {}
    records = malformed = 0
    truncated = False
    since_second = int(since)
    for line in data[:whole].splitlines():
        fields = line.split(b" ")
        if len(fields) != 3 or not fields[0].isdigit() or not fields[2] or len(line) > MAX_LINE_BYTES:
            malformed += 1
            continue
        if int(fields[0]) < since_second:
            continue
        records += 1
        key = fields[2].decode("utf-8", "replace")
        if key not in keys:
            if len(keys) >= max_keys:
                truncated = True
                continue
            keys[key] = None
    return {
        "keys": list(keys),
        "records": records,
        "offset": start + whole,
        "exists": True,
        "truncated": truncated,
        "malformed": malformed,
    }


def empty_journal(path: str, check_mode: bool = False) -> dict:
    """Empty the journal before a window, so it holds only that window's keys. The proxy's
    threads keep their handles: they append with O_APPEND, so they write at the new end."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {"changed": False, "size_before": 0, "exists": False}
    except OSError as error:
        raise JournalError(f"{path}: {error.strerror}") from error
    with os.fdopen(descriptor, "rb") as journal:
        size = os.fstat(journal.fileno()).st_size
    if size and not check_mode:
        descriptor = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.ftruncate(descriptor, 0)
        finally:
            os.close(descriptor)
    return {"changed": size > 0, "size_before": size, "exists": True}


def invalidate(
    address: str,
    port: int,
    keys: list[str],
    flush: bool = False,
    check_mode=False,
    timeout_s=2.0,
    copy_from: list[tuple[str, int]] | None = None,
):
    """Delete `keys` on the shard at address:port, or empty it (`flush`).

    With `copy_from` (the gutter servers), a key the gutter still holds is copied to the shard
    instead, with the time it has left to live there: the newest value clients wrote (the
    shard is still cut off, and a later write is journalled again). That warms a shard that
    returns cold with its hottest keys.

    Returns {deleted (keys the shard held: each would have been stale), absent, copied,
    flushed}. In check mode nothing changes: the shard is asked which keys it holds.
    """
    deleted = absent = copied = 0
    with MemcacheClient(address, port, timeout_s=timeout_s) as client:
        if flush:
            if not check_mode:
                client.flush_all()
            return {"deleted": 0, "absent": 0, "copied": 0, "flushed": True}
        for start in range(0, len(keys), 100):
            chunk = keys[start : start + 100]
            if check_mode:
                held = len(client.get_many(chunk))
                deleted, absent = deleted + held, absent + len(chunk) - held
                continue
            on_gutter = _gutter_values(copy_from or [], chunk, timeout_s)
            for key in chunk:
                if key in on_gutter:
                    value, flags, ttl = on_gutter[key]
                    copied += int(client.set(key, value, exptime=max(ttl, 0), flags=flags))
                elif client.delete(key):
                    deleted += 1
                else:
                    absent += 1
    return {"deleted": deleted, "absent": absent, "copied": copied, "flushed": False}


def _gutter_values(gutter, keys, timeout_s):
    """What the gutter servers hold of `keys` (value, flags, seconds left), the first answer
    for each key. A gutter server that does not answer holds nothing to copy."""
    found: dict[str, tuple[bytes, int, int]] = {}
    for address, port in gutter:
        wanted = [key for key in keys if key not in found]
        if not wanted:
            break
        try:
            with MemcacheClient(address, port, timeout_s=timeout_s) as client:
                held = client.get_many_with_ttl(wanted)
        except (OSError, MemcacheError):
            continue
        # An item about to expire is not worth copying: it would be gone at once.
        found.update({key: item for key, item in held.items() if item[2] == -1 or item[2] > 1})
    return found


def follow(
    journal_path: str,
    offset: int,
    address: str,
    port: int,
    readmitted,
    max_s: float,
    poll_s: float = 0.02,
    grace_s: float = 1.0,
    clock=time.monotonic,
    sleep=time.sleep,
) -> dict:
    """Delete on the shard each key journalled from `offset` on, as soon as the shard takes a
    connection, until `readmitted()` (the router holds the shard healthy) has been true for
    `grace_s` with nothing left to delete, or `max_s` passed.

    Returns {deleted, absent, offset, readmitted_after_s, undeleted (keys left when max_s ran
    out: the caller deletes them), first_delete_after_s}.
    """
    started = clock()
    pending: deque[str] = deque()
    queued: set[str] = set()
    deleted = absent = 0
    client = None
    readmitted_at = first_delete_at = None
    next_health = started
    try:
        while True:
            batch = read_journal(journal_path, offset=offset, max_keys=10**9)
            offset = batch["offset"]
            for key in batch["keys"]:
                if key not in queued:
                    queued.add(key)
                    pending.append(key)
            while pending:
                try:
                    if client is None:
                        client = MemcacheClient(address, port, timeout_s=1.0, connect_timeout_s=0.2)
                    held = client.delete(pending[0])
                except (OSError, MemcacheError):
                    # Still blocked (or restarting): tried again at the next poll.
                    if client is not None:
                        client.close()
                    client = None
                    break
                first_delete_at = first_delete_at or clock()
                deleted, absent = deleted + int(held), absent + int(not held)
                queued.discard(pending.popleft())
            now = clock()
            if readmitted_at is None and now >= next_health:
                next_health = now + 0.25
                if readmitted():
                    readmitted_at = now
            if readmitted_at is not None and now - readmitted_at >= grace_s and not pending:
                break
            if now - started >= max_s:
                break
            sleep(poll_s)
    finally:
        if client is not None:
            client.close()
    return {
        "deleted": deleted,
        "absent": absent,
        "offset": offset,
        "undeleted": list(pending),
        "readmitted_after_s": None if readmitted_at is None else round(readmitted_at - started, 3),
        "first_delete_after_s": None if first_delete_at is None else round(first_delete_at - started, 3),
    }
