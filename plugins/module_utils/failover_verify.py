"""Canary verification of a failover drill: before a shard is blocked, during, after rejoin.

Canaries are versioned keys written THROUGH the router under the datacentre's routing
prefix (`/eqiad/mw/mcfleet-canary-<run>-<n>`). The router stores them without that
prefix, so the verifier reads the shards and the gutter DIRECTLY with the stripped key
to learn where each canary lives. That is what lets it say which canaries belong to the
blocked shard and check, per phase:

- before: every canary readable through the router with its value, on exactly one
  shard and not on the gutter.
- during: the blocked shard's canaries are written again and served from the gutter;
  every other canary is still on its own shard and not on the gutter; canaries deleted
  through the router during the outage read as misses. With the `flush` rejoin policy
  the blocked shard is flushed directly at the end of this phase, while the router is
  still cut off from it.
- after: once the router has re-admitted the shard (a sentinel key that exists only on
  the shard becomes readable through the router), how many canaries show an OLDER value
  than the newest acknowledged one (`stale_after_rejoin`), whether deleted canaries came
  back (`resurrected_deletes`), and whether the gutter's copies expired within the
  gutter TTL.

`lost` counts canaries whose newest acknowledged value the router did not return where
it must (a miss or an older value). A miss of a blocked-shard canary after rejoin is not
lost: the gutter copy was meant to be short-lived (`missing_after_rejoin`).

Phases pass their state through a JSON document (the module keeps it in a file).
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid

from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import (
    READ_PROTOCOLS,
    MemcacheClient,
    MemcacheError,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.safe_files import replace_file

PHASES = ("before", "during", "after")
REJOIN_POLICIES = ("flush", "keep")
STATE_FORMAT = 1
BATCH = 100


class VerifyError(Exception):
    """The verification cannot run at all (bad input, missing state, wrong phase order)."""


def canary_key(run_id: str, n: int) -> str:
    """The key as the shards store it (routing prefix stripped)."""
    return f"mcfleet-canary-{run_id}-{n}"


def canary_value(run_id: str, n: int, version: int) -> str:
    return f"{run_id}:{n}:v{version}:{int(time.time() * 1000)}"


def value_version(value: bytes | None) -> int | None:
    """The version a canary value carries, None for a miss or a foreign value."""
    if value is None:
        return None
    parts = value.decode(errors="replace").split(":")
    if len(parts) < 3 or not parts[2].startswith("v") or not parts[2][1:].isdigit():
        return None
    return int(parts[2][1:])


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _batches(items: list, size: int = BATCH):
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Server:
    """One memcached-protocol endpoint: a shard, a gutter server or the router."""

    def __init__(self, host: str, address: str, port: int, timeout_s: float, read_protocol: str = "text"):
        self.host = host
        self.address = address
        self.port = int(port)
        self.client = MemcacheClient(address, self.port, timeout_s=timeout_s, read_protocol=read_protocol)

    def describe(self) -> str:
        return f"{self.host} ({self.address}:{self.port})"

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for chunk in _batches(keys):
            found.update(self.client.get_many(chunk))
        return found

    def close(self) -> None:
        self.client.close()


def _servers(specs: list[dict], timeout_s: float, what: str) -> list[Server]:
    servers = []
    for spec in specs:
        address = spec.get("address") or spec.get("host")
        if not address or not spec.get("port"):
            raise VerifyError(f"{what}: every server needs an address and a port, got {spec!r}")
        # A router's engine decides how to read through it (memcache_client.READ_PROTOCOLS);
        # shards and gutter servers are plain memcached and carry no engine.
        engine = spec.get("engine") or "mcrouter"
        if engine not in READ_PROTOCOLS:
            raise VerifyError(f"{what}: engine must be one of {', '.join(READ_PROTOCOLS)}, got {engine!r}")
        name = str(spec.get("host") or address)
        servers.append(Server(name, str(address), int(spec["port"]), timeout_s, READ_PROTOCOLS[engine]))
    if not servers:
        raise VerifyError(f"{what}: no servers given")
    return servers


class FailoverVerifier:
    """Runs one phase at a time against a router, the main shards and the gutter pool.

    `dry_run` (check mode) only reads: it writes, deletes and flushes nothing, and its
    result says what the phase would have written.
    """

    def __init__(
        self,
        router: dict,
        shards: list[dict],
        gutter: list[dict],
        route_prefix: str,
        timeout_s: float = 2.0,
        dry_run: bool = False,
        poll_interval_s: float = 0.2,
    ):
        # "" sends unprefixed keys, which a router hands to its default (local) route.
        if route_prefix and not (route_prefix.startswith("/") and route_prefix.endswith("/")):
            raise VerifyError(
                f"route_prefix must look like /<dc>/<cluster>/ (or be empty), got {route_prefix!r}"
            )
        self.router = _servers([router], timeout_s, "router")[0]
        self.shards = _servers(shards, timeout_s, "shards")
        self.gutter = _servers(gutter, timeout_s, "gutter")
        names = [s.host for s in self.shards] + [g.host for g in self.gutter]
        if len(set(names)) != len(names):
            raise VerifyError(f"a server is listed twice among shards and gutter: {names}")
        self.route_prefix = route_prefix
        self.dry_run = dry_run
        self.poll_interval_s = poll_interval_s

    def close(self) -> None:
        for server in [self.router, *self.shards, *self.gutter]:
            server.close()

    # -- helpers ------------------------------------------------------------------

    def _routed(self, key: str) -> str:
        return self.route_prefix + key

    def _shard(self, host: str) -> Server:
        for shard in self.shards:
            if shard.host == host:
                return shard
        raise VerifyError(f"blocked_shard {host!r} is not a main shard here: {[s.host for s in self.shards]}")

    def _router_get_many(self, keys: list[str]) -> tuple[dict[str, bytes], int]:
        """Reads through the router: values by STRIPPED key, and how many keys errored."""
        found: dict[str, bytes] = {}
        errors = 0
        for chunk in _batches(keys):
            routed = [self._routed(k) for k in chunk]
            try:
                values = self.router.client.get_many(routed)
            except MemcacheError:
                # Retry one by one so a single failing key does not hide the others.
                values = {}
                for key in routed:
                    try:
                        value = self.router.client.get(key)
                    except MemcacheError:
                        errors += 1
                        continue
                    if value is not None:
                        values[key] = value
            for key, value in values.items():
                found[key[len(self.route_prefix) :]] = value
        return found, errors

    def _router_set(self, state: dict, canary: dict) -> bool:
        """Writes the canary's next version through the router; True when STORED."""
        version = canary["attempted"] + 1
        canary["attempted"] = version
        value = canary_value(state["run_id"], canary["n"], version)
        canary["last_write"] = time.time()
        try:
            stored = self.router.client.set(self._routed(canary["key"]), value)
        except MemcacheError as exc:
            canary["last_error"] = str(exc)
            return False
        if stored:
            canary["acked"] = version
        return stored

    def _reachable_get_many(self, server: Server, keys: list[str]) -> dict[str, bytes] | None:
        try:
            return server.get_many(keys)
        except MemcacheError:
            return None

    def _gutter_values(self, keys: list[str]) -> tuple[dict[str, bytes], list[str]]:
        """Values found on any gutter server, and the gutter servers that did not answer."""
        found: dict[str, bytes] = {}
        down = []
        for server in self.gutter:
            values = self._reachable_get_many(server, keys)
            if values is None:
                down.append(server.host)
                continue
            found.update(values)
        return found, down

    @classmethod
    def _count_lost(cls, canaries: list, through_router: dict) -> int:
        """Acknowledged canaries the router no longer serves at their newest version."""
        return sum(
            1
            for canary in canaries
            if canary["acked"]
            and cls._classify(canary, through_router.get(canary["key"])) in ("missing", "older")
        )

    @staticmethod
    def _classify(canary: dict, value: bytes | None) -> str:
        """current | older | newer_unacked | missing | foreign, against the newest ack."""
        version = value_version(value)
        if value is None:
            return "missing"
        if version is None:
            return "foreign"
        if version == canary["acked"]:
            return "current"
        if version < canary["acked"]:
            return "older"
        # A write that timed out may still have been applied: newer than acknowledged.
        return "newer_unacked" if version <= canary["attempted"] else "foreign"

    def _is_lost(self, canary: dict, value: bytes | None) -> bool:
        """An acknowledged value the router must return came back missing or older."""
        return bool(canary["acked"]) and self._classify(canary, value) in ("missing", "older")

    def _canaries(self, state: dict, home: str | None = None, role: str | None = None) -> list[dict]:
        return [
            c
            for c in state["canaries"]
            if (home is None or c["home"] == home) and (role is None or c.get("role") == role)
        ]

    def _check_connectivity(self) -> dict:
        versions = {}
        for server in [self.router, *self.shards, *self.gutter]:
            try:
                versions[server.host] = server.client.version()
            except MemcacheError as exc:
                versions[server.host] = f"unreachable: {exc}"
        return versions

    # -- phases -------------------------------------------------------------------

    def before(self, canaries: int, run_id: str | None = None) -> tuple[dict, dict]:
        if canaries < 3 * len(self.shards):
            raise VerifyError(
                f"canaries must be at least 3 per shard ({3 * len(self.shards)}), got {canaries}"
            )
        started = time.monotonic()
        run_id = run_id or new_run_id()
        state = {
            "format": STATE_FORMAT,
            "run_id": run_id,
            "route_prefix": self.route_prefix,
            "router": f"{self.router.address}:{self.router.port}",
            "shards": [s.host for s in self.shards],
            "gutter": [g.host for g in self.gutter],
            "created": time.time(),
            "canaries": [
                {"n": n, "key": canary_key(run_id, n), "home": None, "attempted": 0, "acked": 0, "role": None}
                for n in range(canaries)
            ],
            "phases": {},
        }
        result = self._result("before", state)
        if self.dry_run:
            result["would_write"] = canaries
            result["servers"] = self._check_connectivity()
            result["violations"] = [
                f"{host} {status}"
                for host, status in result["servers"].items()
                if status.startswith("unreach")
            ]
            return self._finish(result, started), state

        timer = time.monotonic()
        for canary in state["canaries"]:
            result["written"] += 1
            result["acknowledged"] += int(self._router_set(state, canary))
        result["timings_s"]["write"] = time.monotonic() - timer

        timer = time.monotonic()
        keys = [c["key"] for c in state["canaries"]]
        through_router, result["read_errors"] = self._router_get_many(keys)
        result["lost"] += self._count_lost(state["canaries"], through_router)
        result["timings_s"]["read_router"] = time.monotonic() - timer

        timer = time.monotonic()
        placements: dict[str, list[str]] = {c["key"]: [] for c in state["canaries"]}
        for shard in self.shards:
            values = self._reachable_get_many(shard, keys)
            if values is None:
                result["violations"].append(f"shard {shard.describe()} did not answer a direct read")
                continue
            for key in values:
                placements[key].append(shard.host)
        gutter_values, gutter_down = self._gutter_values(keys)
        result["violations"] += [f"gutter {h} did not answer a direct read" for h in gutter_down]
        homes = {s.host: 0 for s in self.shards}
        for canary in state["canaries"]:
            where = placements[canary["key"]]
            if len(where) == 1:
                canary["home"] = where[0]
                homes[where[0]] += 1
            elif canary["acked"]:
                result["misplaced"] += 1
        result["on_gutter"] = sum(1 for key in keys if key in gutter_values)
        result["homes"] = homes
        result["timings_s"]["locate"] = time.monotonic() - timer

        if result["lost"]:
            result["violations"].append(f"{result['lost']} canaries not readable through the router")
        if result["acknowledged"] < result["written"]:
            result["violations"].append(
                f"{result['written'] - result['acknowledged']} canary writes not acknowledged"
            )
        if result["misplaced"]:
            result["violations"].append(f"{result['misplaced']} canaries not on exactly one main shard")
        if result["on_gutter"]:
            result["violations"].append(f"{result['on_gutter']} canaries on the gutter with every shard up")
        state["phases"]["before"] = result
        return self._finish(result, started), state

    def during(
        self,
        state: dict,
        blocked_shard: str,
        rejoin_policy: str,
        blocked_at: float | None = None,
        failover_timeout_s: float = 60.0,
        delete_fraction: float = 0.1,
        also_out: tuple = (),
    ) -> tuple[dict, dict]:
        self._require(state, "during", needs="before")
        if rejoin_policy not in REJOIN_POLICIES:
            raise VerifyError(f"rejoin_policy must be one of {REJOIN_POLICIES}, got {rejoin_policy!r}")
        blocked = self._shard(blocked_shard)
        started = time.monotonic()
        phase_start = time.time()
        state["blocked_shard"] = blocked.host
        state["rejoin_policy"] = rejoin_policy
        result = self._result("during", state)

        on_blocked = self._canaries(state, home=blocked.host)
        if len(on_blocked) < 3:
            raise VerifyError(
                f"only {len(on_blocked)} canaries live on {blocked.host}: need 3 (sentinel, delete, update);"
                " raise `canaries`"
            )
        # Roles among the blocked shard's canaries: the first is never touched during the
        # outage (its presence through the router later proves re-admission), a fraction
        # is deleted during the outage, the rest is updated.
        deletes = max(1, math.ceil((len(on_blocked) - 1) * delete_fraction))
        for i, canary in enumerate(on_blocked):
            canary["role"] = "sentinel" if i == 0 else "delete" if i <= deletes else "update"
        # Shards out at the same time (a batch) have their own failover and their own check:
        # their canaries are on the gutter too, and are judged there, not here.
        others_out = {self._shard(host).host for host in also_out if host != blocked.host}
        for canary in state["canaries"]:
            if canary["home"] in others_out:
                canary["role"] = "other_out"
            elif canary["home"] != blocked.host:
                canary["role"] = "elsewhere" if canary["home"] else "unplaced"
        updates = self._canaries(state, home=blocked.host, role="update")
        to_delete = self._canaries(state, home=blocked.host, role="delete")
        elsewhere = self._canaries(state, role="elsewhere")

        if self.dry_run:
            result["would_write"] = len(updates) + len(to_delete) + len(elsewhere)
            result["would_delete"] = len(to_delete)
            result["would_flush"] = blocked.host if rejoin_policy == "flush" else None
            result["servers"] = self._check_connectivity()
            return self._finish(result, started), state

        # 1. Wait until the router fails over: a blocked-shard canary written through the
        # router is acknowledged AND lands on the gutter (drop mode takes a while).
        timer = time.monotonic()
        probe = updates[0]
        deadline = time.monotonic() + failover_timeout_s
        failed_over_at = None
        while time.monotonic() < deadline:
            result["written"] += 1
            stored = self._router_set(state, probe)
            result["acknowledged"] += int(stored)
            if stored:
                on_gutter, _missing = self._gutter_values([probe["key"]])
                if value_version(on_gutter.get(probe["key"])) == probe["acked"]:
                    failed_over_at = time.time()
                    break
            time.sleep(self.poll_interval_s)
        result["timings_s"]["failover_wait"] = time.monotonic() - timer
        if failed_over_at is None:
            result["violations"].append(
                f"the router did not fail {blocked.host}'s keys over to the gutter"
                f" within {failover_timeout_s}s"
            )
        else:
            result["time_to_failover_s"] = round(failed_over_at - (blocked_at or phase_start), 3)
            state["failed_over_at"] = failed_over_at

        # 2. New versions for every canary but the sentinel; then delete some through the router.
        timer = time.monotonic()
        for canary in updates[1:] + to_delete + elsewhere:
            result["written"] += 1
            result["acknowledged"] += int(self._router_set(state, canary))
        for canary in to_delete:
            try:
                self.router.client.delete(self._routed(canary["key"]))
                canary["deleted"] = True
                result["deletes_acknowledged"] += 1
            except MemcacheError as exc:
                canary["deleted"] = True  # it may or may not have happened: it must not be readable
                canary["last_error"] = str(exc)
        result["timings_s"]["write"] = time.monotonic() - timer

        # 3. Read everything back through the router.
        timer = time.monotonic()
        keys = [c["key"] for c in updates + to_delete + elsewhere]
        through_router, result["read_errors"] = self._router_get_many(keys)
        result["lost"] += self._count_lost(updates + elsewhere, through_router)
        result["deleted_still_visible"] = sum(1 for c in to_delete if c["key"] in through_router)
        result["timings_s"]["read_router"] = time.monotonic() - timer

        # 4. Where does each canary live now? Directly on the gutter and the other shards.
        timer = time.monotonic()
        gutter_values, gutter_down = self._gutter_values(keys)
        result["violations"] += [f"gutter {h} did not answer a direct read" for h in gutter_down]
        result["on_gutter"] = sum(
            1 for c in updates if c["acked"] and value_version(gutter_values.get(c["key"])) == c["acked"]
        )
        for shard in self.shards:
            if shard is blocked:
                continue
            mine = [c for c in elsewhere if c["home"] == shard.host]
            values = self._reachable_get_many(shard, [c["key"] for c in mine]) or {}
            for canary in mine:
                on_home = value_version(values.get(canary["key"])) == canary["acked"]
                result["untouched_elsewhere"] += int(on_home and canary["key"] not in gutter_values)
                result["elsewhere_on_gutter"] += int(canary["key"] in gutter_values)
        # The blocked shard itself, if this verifier can still reach it (it runs outside
        # the blocked sources): the old values waiting there are the stale-after-rejoin risk.
        direct = self._reachable_get_many(blocked, [c["key"] for c in updates + to_delete])
        result["blocked_shard_reachable"] = direct is not None
        if direct is not None:
            result["old_values_on_blocked_shard"] = sum(
                1 for c in updates + to_delete if self._classify(c, direct.get(c["key"])) == "older"
            )
        result["timings_s"]["locate"] = time.monotonic() - timer

        expected_on_gutter = sum(1 for c in updates if c["acked"])
        if result["lost"]:
            result["violations"].append(f"{result['lost']} canaries lost their newest acknowledged value")
        if result["on_gutter"] < expected_on_gutter:
            result["violations"].append(
                f"only {result['on_gutter']} of {expected_on_gutter} of {blocked.host}'s canaries"
                " are on the gutter"
            )
        if result["untouched_elsewhere"] < len(elsewhere):
            result["violations"].append(
                f"only {result['untouched_elsewhere']} of {len(elsewhere)} canaries of other shards"
                " are untouched"
                f" ({result['elsewhere_on_gutter']} on the gutter)"
            )
        if result["deleted_still_visible"]:
            result["violations"].append(
                f"{result['deleted_still_visible']} canaries deleted during the outage still read"
            )

        # 5. Flush policy: empty the shard while the router still cannot reach it, so
        # nothing old is left to serve when it is re-admitted.
        if rejoin_policy == "flush":
            timer = time.monotonic()
            try:
                blocked.client.flush_all()
                state["flushed_at"] = time.time()
                result["flushed"] = True
            except MemcacheError as exc:
                result["flushed"] = False
                result["violations"].append(
                    f"cannot flush {blocked.describe()} directly ({exc}): run the verifier from a host the"
                    " block does not cover (the controller, with the block limited to the routers' addresses)"
                )
            result["timings_s"]["flush"] = time.monotonic() - timer

        state["phases"]["during"] = result
        return self._finish(result, started), state

    def after(
        self,
        state: dict,
        gutter_ttl_s: int,
        rejoin_policy: str | None = None,
        readmission_timeout_s: float = 60.0,
        expiry_margin_s: float = 2.0,
        cleanup: bool = True,
    ) -> tuple[dict, dict]:
        self._require(state, "after", needs="during")
        if rejoin_policy and rejoin_policy != state["rejoin_policy"]:
            raise VerifyError(
                f"rejoin_policy {rejoin_policy!r} differs from the one the during phase applied"
                f" ({state['rejoin_policy']!r})"
            )
        policy = state["rejoin_policy"]
        blocked = self._shard(state["blocked_shard"])
        started = time.monotonic()
        result = self._result("after", state)
        result["rejoin_policy"] = policy
        sentinel = self._canaries(state, home=blocked.host, role="sentinel")[0]
        updates = self._canaries(state, home=blocked.host, role="update")
        deleted = self._canaries(state, home=blocked.host, role="delete")
        elsewhere = self._canaries(state, role="elsewhere")

        if self.dry_run:
            result["would_write"] = 1
            result["would_delete"] = len(state["canaries"]) if cleanup else 0
            result["servers"] = self._check_connectivity()
            return self._finish(result, started), state

        # 1. Re-admission: the sentinel is written directly to the shard only now, and was
        # never written during the outage, so the gutter cannot hold it: the router returns
        # it only once it sends reads to the shard again.
        timer = time.monotonic()
        sentinel["attempted"] += 1
        sentinel["acked"] = sentinel["attempted"]
        expected = canary_value(state["run_id"], sentinel["n"], sentinel["acked"])
        readmitted = False
        deadline = time.monotonic() + readmission_timeout_s
        written = False
        while time.monotonic() < deadline:
            try:
                if not written:
                    written = blocked.client.set(sentinel["key"], expected)
                if written and self.router.client.get(self._routed(sentinel["key"])) == expected.encode():
                    readmitted = True
                    break
            except MemcacheError:
                pass
            time.sleep(self.poll_interval_s)
        result["written"] += 1
        result["acknowledged"] += int(written)
        result["readmitted"] = readmitted
        result["timings_s"]["readmission_wait"] = time.monotonic() - timer
        if readmitted:
            state["readmitted_at"] = result["readmitted_at"] = time.time()
        else:
            result["violations"].append(
                f"the router did not re-admit {blocked.host} within {readmission_timeout_s}s:"
                " stale values were not counted"
            )

        # 2. Read everything through the router.
        timer = time.monotonic()
        keys = [c["key"] for c in updates + deleted + elsewhere]
        through_router, result["read_errors"] = self._router_get_many(keys)
        for canary in updates:
            outcome = self._classify(canary, through_router.get(canary["key"]))
            result["stale_after_rejoin"] += int(outcome == "older")
            result["missing_after_rejoin"] += int(outcome == "missing")
            result["current_after_rejoin"] += int(outcome in ("current", "newer_unacked"))
        result["lost"] += self._count_lost(elsewhere, through_router)
        result["resurrected_deletes"] = sum(1 for c in deleted if c["key"] in through_router)
        result["timings_s"]["read_router"] = time.monotonic() - timer

        # 3. Gutter copies must be gone within the gutter TTL of their last write.
        timer = time.monotonic()
        gutter_keys = [c["key"] for c in updates + deleted]
        last_write = max((c.get("last_write") or 0) for c in updates + deleted)
        deadline_wall = last_write + gutter_ttl_s + expiry_margin_s
        left, _missing = self._gutter_values(gutter_keys)
        while left and time.time() < deadline_wall:
            time.sleep(min(self.poll_interval_s * 5, max(0.05, deadline_wall - time.time())))
            left, _missing = self._gutter_values(gutter_keys)
        result["gutter_copies_left"] = len(left)
        result["gutter_expired_within_ttl"] = not left
        result["timings_s"]["gutter_expiry_wait"] = time.monotonic() - timer

        if result["lost"]:
            result["violations"].append(f"{result['lost']} canaries of other shards lost their newest value")
        if policy == "flush" and result["stale_after_rejoin"]:
            result["violations"].append(
                f"{result['stale_after_rejoin']} stale values visible after rejoin despite the flush policy"
            )
        if policy == "flush" and result["resurrected_deletes"]:
            result["violations"].append(
                f"{result['resurrected_deletes']} deleted canaries came back after rejoin"
            )
        if left:
            result["violations"].append(
                f"{len(left)} gutter copies still present {gutter_ttl_s}s (+{expiry_margin_s}s)"
                " after their last write"
            )

        if cleanup:
            timer = time.monotonic()
            for canary in state["canaries"]:
                try:
                    self.router.client.delete(self._routed(canary["key"]))
                    result["cleaned_up"] += 1
                except MemcacheError:
                    pass
            result["timings_s"]["cleanup"] = time.monotonic() - timer

        state["phases"]["after"] = result
        return self._finish(result, started), state

    # -- bookkeeping --------------------------------------------------------------

    @staticmethod
    def _require(state: dict | None, phase: str, needs: str) -> None:
        if not state or state.get("format") != STATE_FORMAT:
            raise VerifyError(f"phase {phase!r} needs the state of phase {needs!r}: none given")
        if needs not in state.get("phases", {}):
            raise VerifyError(
                f"phase {phase!r} needs phase {needs!r} to have run first (run {state.get('run_id')})"
            )

    @staticmethod
    def _result(phase: str, state: dict) -> dict:
        return {
            "phase": phase,
            "run_id": state["run_id"],
            "blocked_shard": state.get("blocked_shard"),
            "canaries": len(state["canaries"]),
            "written": 0,
            "acknowledged": 0,
            "lost": 0,
            "read_errors": 0,
            "misplaced": 0,
            "on_gutter": 0,
            "untouched_elsewhere": 0,
            "elsewhere_on_gutter": 0,
            "deletes_acknowledged": 0,
            "deleted_still_visible": 0,
            "stale_after_rejoin": 0,
            "missing_after_rejoin": 0,
            "current_after_rejoin": 0,
            "resurrected_deletes": 0,
            "gutter_expired_within_ttl": None,
            "time_to_failover_s": None,
            "cleaned_up": 0,
            "violations": [],
            "timings_s": {},
        }

    @staticmethod
    def _finish(result: dict, started: float) -> dict:
        result["timings_s"]["total"] = time.monotonic() - started
        result["timings_s"] = {k: round(v, 3) for k, v in result["timings_s"].items()}
        result["ok"] = not result["violations"]
        result["finished_at"] = time.time()
        return result


def load_state(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def save_state(path: str, state: dict) -> None:
    """Atomic replace, so an interrupted run never leaves half a state file."""
    replace_file(path, json.dumps(state, indent=1, sort_keys=True))
