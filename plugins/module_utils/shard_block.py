"""Block a memcached shard's port for a failover drill, and always lift the block again.

The block lives in one dedicated chain (default MCFLEET-DRILL) per address family, reached
by one commented jump rule at the top of INPUT, above the client firewall's jump (the
ordering contract of the netfilter package, which does all reading and writing of rules).
Nothing else is touched: removal deletes only jump rules that target that chain, then
flushes and deletes the chain.

A rollback script (plain /bin/sh and the same iptables binaries, no Python) is written
before the block goes in, and a systemd timer runs it, so the block lifts by itself if
the controller never comes back.

This file keeps what is the drill's own: the request, conntrack, and the rollback script,
record and timer. Every command goes through a CommandRunner, whose prefix (e.g. `ip netns exec NS`) lets
the same code run inside a network namespace; the rollback script carries that prefix too.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from ansible_collections.mcfleet.fleet.plugins.module_utils.netfilter import (
    BACKENDS,
    FAMILIES,
    MAINTENANCE_CHAIN_PATTERN,
    CommandRunner,
    NetfilterError,
    parse_backend,
    parse_network,
    render_rule,
    validate_chain_name,
    validate_netns,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.safe_files import replace_file

# Re-exported: callers and tests name them through this module.
__all__ = ["BACKENDS", "FAMILIES", "CommandRunner", "parse_backend", "validate_netns"]

DEFAULT_CHAIN = "MCFLEET-DRILL"
DEFAULT_STATE_DIR = "/run/mcfleet"
# What a block that survives a reboot keeps on disk (survive_reboot).
BOOT_DIR = "/var/lib/mcfleet/boot"
UNIT_DIR = "/etc/systemd/system"
MODES = ("reject", "drop")
SSH_PORT = 22
MAX_ROLLBACK_S = 86400
JUMP_COMMENT = "mcfleet.fleet.shard_block drill; lifted by its rollback timer"
_CONNTRACK_FAMILY = {"ipv4": "ipv4", "ipv6": "ipv6"}
_CONNTRACK_DELETED = re.compile(r"(\d+) flow entries have been deleted")

# A drill's errors are netfilter errors: one type for the module to report.
ShardBlockError = NetfilterError


# --- request -------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockRequest:
    """A validated block: which port, how, from which sources (empty = every client)."""

    port: int
    mode: str
    sources: tuple = ()
    chain: str = DEFAULT_CHAIN

    def families(self):
        """Families the block needs: both for every client, else those of the sources."""
        if not self.sources:
            return set(FAMILIES)
        return {"ipv4" if source.version == 4 else "ipv6" for source in self.sources}

    def jump_rule(self):
        """The one rule in INPUT that sends this port's non-loopback TCP into the chain."""
        return [
            "!", "-i", "lo",
            "-p", "tcp", "-m", "tcp", "--dport", str(self.port),
            "-m", "comment", "--comment", JUMP_COMMENT,
            "-j", self.chain,
        ]  # fmt: skip

    def chain_rules(self, family):
        """Rules inside the chain for one family (tokens in the order `iptables -S` prints)."""
        if family not in self.families():
            return []
        target = ["-j", "REJECT", "--reject-with", "tcp-reset"] if self.mode == "reject" else ["-j", "DROP"]
        match = ["-p", "tcp", "-m", "tcp", "--dport", str(self.port), *target]
        if not self.sources:
            return [match]
        version = 4 if family == "ipv4" else 6
        return [["-s", str(source), *match] for source in self.sources if source.version == version]

    def jump_line(self):
        return render_rule("-A", "INPUT", self.jump_rule())

    def chain_lines(self, family):
        """The chain's rules for one family as `-A` lines (none: the family holds no block)."""
        return [render_rule("-A", self.chain, rule) for rule in self.chain_rules(family)]


def validate_request(port, mode, sources, chain=DEFAULT_CHAIN):
    """Check every field; errors name the field and the value it got."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ShardBlockError(f"port={port!r}: must be an integer from 1 to 65535")
    if port == SSH_PORT:
        raise ShardBlockError(f"port={port}: that is SSH; a drill never blocks it")
    if mode not in MODES:
        raise ShardBlockError(f"mode={mode!r}: must be one of {', '.join(MODES)}")
    validate_chain(chain)
    networks = [
        parse_network(source, f"sources[{index}]", strict=True, forbid_loopback=True)
        for index, source in enumerate(sources or [])
    ]
    unique = sorted(set(networks), key=lambda net: (net.version, net.network_address, net.prefixlen))
    return BlockRequest(port=port, mode=mode, sources=tuple(unique), chain=chain)


def validate_chain(chain):
    # Only drill and maintenance chains: a typo must never let the module flush another
    # role's MCFLEET-* chain (the client firewall's).
    return validate_chain_name(
        chain,
        "chain",
        MAINTENANCE_CHAIN_PATTERN,
        "MCFLEET-DRILL[-<NAME>] or MCFLEET-MAINT[-<NAME>] (capitals and digits)",
    )


def validate_rollback_after(seconds):
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 < seconds <= MAX_ROLLBACK_S:
        raise ShardBlockError(
            f"rollback_after_s={seconds!r}: must be an integer from 1 to {MAX_ROLLBACK_S}; "
            "a block without a rollback timer is never applied"
        )


# --- conntrack ---------------------------------------------------------------------------


def delete_conntrack_entries(runner, conntrack, request, families):
    """Delete tracked TCP flows to the port (from the sources, if any); returns how many went."""
    deleted = 0
    for family in sorted(families):
        base = [conntrack, "-D", "-f", _CONNTRACK_FAMILY[family], "-p", "tcp", "--dport", str(request.port)]
        version = 4 if family == "ipv4" else 6
        sources = [source for source in request.sources if source.version == version]
        commands = [[*base, "-s", str(source)] for source in sources] if request.sources else [base]
        for argv in commands:
            result = runner(argv)
            found = _CONNTRACK_DELETED.search(result.stdout + result.stderr)
            # conntrack exits 1 when nothing matched; only a missing count is an error.
            if not found:
                raise ShardBlockError(
                    f"conntrack failed (rc={result.rc}): {shlex.join(runner.argv(argv))}: "
                    f"{(result.stderr or result.stdout).strip()}"
                )
            deleted += int(found.group(1))
    return deleted


# --- rollback: script, record, timer ----------------------------------------------------


@dataclass(frozen=True)
class DrillPaths:
    """Names derived from the chain (and netns), so two drills never share a timer or file."""

    state_dir: str
    chain: str
    netns: str | None = None

    @property
    def stem(self):
        stem = self.chain.lower()
        return f"{stem}-{self.netns}" if self.netns else stem

    @property
    def record(self):
        return os.path.join(self.state_dir, f"{self.stem}.json")

    @property
    def script(self):
        return os.path.join(self.state_dir, f"{self.stem}-rollback.sh")

    @property
    def timer_unit(self):
        return f"{self.stem}-rollback"

    # A block that must outlive a reboot (an in-place upgrade reboots with memcached masked):
    # /run is emptied and the transient timer ends, so a unit of the next boot arms the timer
    # again, for the time left, on a copy of the script kept on disk.
    @property
    def boot_script(self):
        return os.path.join(BOOT_DIR, f"{self.stem}-rollback.sh")

    @property
    def boot_arm_script(self):
        return os.path.join(BOOT_DIR, f"{self.stem}-arm.sh")

    @property
    def boot_unit_file(self):
        return os.path.join(UNIT_DIR, f"{self.stem}-rearm.service")

    @property
    def boot_wants_link(self):
        return os.path.join(UNIT_DIR, "multi-user.target.wants", f"{self.stem}-rearm.service")

    @property
    def boot_files(self):
        return (self.boot_wants_link, self.boot_unit_file, self.boot_arm_script, self.boot_script)


def timer_argv(systemd_run, unit, seconds, script):
    """systemd-run arguments of the rollback timer (also written into the boot's arm script)."""
    return [
        systemd_run,
        f"--unit={unit}",
        f"--on-active={seconds}s",
        # The default accuracy of one minute would let a 5 s rollback fire a minute late.
        "--timer-property=AccuracySec=100ms",
        "--timer-property=RemainAfterElapse=no",
        "--description=mcfleet shard block rollback",
        "/bin/sh",
        script,
    ]


def boot_arm_script(paths, deadline):
    """The script the boot unit runs: the rollback timer again, for what is left of its time."""
    unit = shlex.quote(paths.timer_unit)
    argv = timer_argv("systemd-run", paths.timer_unit, "LEFT", paths.boot_script)
    # Every word quoted but the delay, which the shell fills in.
    delay = '--on-active="${left}s"'
    arm = " ".join(delay if word == "--on-active=LEFTs" else shlex.quote(word) for word in argv)
    return "\n".join(
        [
            "#!/bin/sh",
            f"# Written by mcfleet.fleet.shard_block: a reboot ended the rollback timer of {paths.chain};",
            "# arm it again for the time left until its deadline (at once if that has passed).",
            f"left=$(( {int(deadline)} - $(date +%s) ))",
            '[ "$left" -ge 1 ] || left=1',
            f"systemctl reset-failed {unit}.timer {unit}.service 2>/dev/null",
            f"exec {arm}",
            "",
        ]
    )


def boot_unit(paths):
    return "\n".join(
        [
            "# Written by mcfleet.fleet.shard_block; removed with the block.",
            "[Unit]",
            f"Description=mcfleet: arm the rollback timer of {paths.chain} again after a reboot",
            f"ConditionPathExists={paths.boot_arm_script}",
            "",
            "[Service]",
            "Type=oneshot",
            f"ExecStart=/bin/sh {paths.boot_arm_script}",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )


# What a maintenance window restores on its host (restore_memcached): the unit, its config, the
# copy of the config the host last ran well (kept by the maintenance before it stops memcached),
# the role's check of a config, and the transient unit an in-place upgrade runs in.
MEMCACHED_UNIT = "memcached.service"
MEMCACHED_CONFIG = "/etc/memcached.conf"
KNOWN_GOOD_CONFIG = "/var/lib/mcfleet/memcached.conf.known-good"
CONFIG_CHECK = "/usr/local/sbin/memcached-check-config"
UPGRADE_UNIT = "mcfleet-upgrade.service"
# How long the rollback lets an in-place upgrade's dpkg finish before it starts memcached.
UPGRADE_WAIT_S = 1800


def memcached_restore_lines():
    """Shell lines that bring memcached back if a maintenance left it stopped or masked.

    The new config is kept if it passes its check and memcached starts on it; otherwise the
    known-good copy goes back and memcached starts on that. Runs before the block lifts, so
    the routers see the server again only once it serves.
    """
    unit, config, good, check = (
        shlex.quote(x) for x in (MEMCACHED_UNIT, MEMCACHED_CONFIG, KNOWN_GOOD_CONFIG, CONFIG_CHECK)
    )
    upgrade = shlex.quote(UPGRADE_UNIT)
    return [
        f'case "$(systemctl is-enabled {unit} 2>/dev/null)" in masked*) out=1 ;; *) out=0 ;; esac',
        f"systemctl is-active --quiet {unit} || out=1",
        'if [ "$out" = 1 ]; then',
        "    waited=0",
        f'    while systemctl is-active --quiet {upgrade} && [ "$waited" -lt {UPGRADE_WAIT_S} ]; do',
        "        sleep 2; waited=$((waited + 2))",
        "    done",
        f"    systemctl unmask {unit} || failed=1",
        "    systemctl daemon-reload || true",
        f"    if [ -s {good} ] && [ -x {check} ] && ! {check} {config} >/dev/null 2>&1; then",
        f"        cp {good} {config}",
        "    fi",
        f"    if ! {{ systemctl start {unit} && sleep 1 && systemctl is-active --quiet {unit}; }}; then",
        f"        if [ -s {good} ] && ! cmp -s {good} {config}; then",
        f"            cp {good} {config}",
        f"            systemctl reset-failed {unit} || true",
        f"            systemctl start {unit} || failed=1",
        "        else",
        "            failed=1",
        "        fi",
        "    fi",
        "fi",
    ]


# A shard that may hold values clients changed while it was out (a warm restart, a hold
# drill) until its window replayed the routers' failover journals (plugins/module_utils/rejoin.py).
# The window writes "<address> <port> [<warm-start marker>]" here before the shard can hold
# such values, and removes it once they are deleted.
REJOIN_PENDING = "/var/lib/mcfleet/rejoin-pending"
# What the rollback runs on such a shard: memcached empties itself (flush_all). A shard that
# does not answer holds nothing to serve.
FLUSH_PROGRAM = """import socket, sys
try:
    connection = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
except ConnectionRefusedError:
    sys.exit(0)
connection.sendall(b"flush_all\\r\\n")
sys.exit(0 if connection.recv(64).startswith(b"OK") else 1)"""


def rollback_script(tables, request, paths, backend, restore_memcached=False, survive_reboot=False):
    pending = shlex.quote(REJOIN_PENDING)
    lines = [
        "#!/bin/sh",
        f"# Written by mcfleet.fleet.shard_block: lifts the drill block on {request.chain} ({backend}).",
        "# Run by the rollback timer if the controller never lifts the block itself.",
        "failed=0",
        # A shard never made consistent (rejoin-pending) does not start warm ...
        f"if [ -f {pending} ]; then",
        f"    read -r address port marker < {pending} || true",
        '    case "$marker" in /*.warm-start) rm -f -- "$marker" ;; esac',
        "fi",
    ]
    if restore_memcached:
        lines += memcached_restore_lines()
    lines += [
        # ... and is emptied before the block lifts: cold, never stale.
        f"if [ -f {pending} ]; then",
        f'    python3 -c {shlex.quote(FLUSH_PROGRAM)} "$address" "$port" || failed=1',
        f"    rm -f {pending}",
        "fi",
    ]
    for family in FAMILIES:
        if tables.get(family) is not None:
            lines += tables[family].removal_shell_lines(request.chain, request.jump_rule())
    lines.append(f"rm -f {shlex.quote(paths.record)}")
    if survive_reboot:
        # Done: no later boot arms it again.
        lines.append("rm -f " + " ".join(shlex.quote(path) for path in paths.boot_files))
    lines += ['exit "$failed"', ""]
    return "\n".join(lines)


def write_private_file(path, text, mode=0o600):
    replace_file(path, text, mode=mode, directory_mode=0o700)


def load_record(paths):
    try:
        with open(paths.record) as stream:
            record = json.load(stream)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ShardBlockError(f"unreadable drill record {paths.record}: {error}") from None
    if record.get("backend") not in BACKENDS:
        raise ShardBlockError(
            f"drill record {paths.record} names no known backend: {record.get('backend')!r}"
        )
    return record


def make_record(request, backend, paths, rollback_after_s, now=None):
    armed_at = time.time() if now is None else now
    return {
        "chain": request.chain,
        "backend": backend,
        "netns": paths.netns,
        "port": request.port,
        "mode": request.mode,
        "sources": [str(source) for source in request.sources],
        "timer_unit": paths.timer_unit,
        "rollback_script": paths.script,
        "rollback_after_s": rollback_after_s,
        "armed_at": iso_utc(armed_at),
        "expires_at": iso_utc(armed_at + rollback_after_s),
        # The same moment as a whole epoch second (rounded up), for the boot's arm script.
        "deadline": math.ceil(armed_at + rollback_after_s),
    }


def iso_utc(epoch):
    # timezone.utc, not datetime.UTC: bullseye hosts run this with Python 3.9.
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")  # noqa: UP017


class SystemdRollbackTimer:
    """A transient systemd timer (systemd-run --on-active) that runs the rollback script once."""

    def __init__(self, runner, systemd_run="systemd-run", systemctl="systemctl"):
        self.runner = runner
        self.systemd_run = systemd_run
        self.systemctl = systemctl

    def is_armed(self, unit):
        return self.runner([self.systemctl, "is-active", "--quiet", f"{unit}.timer"]).rc == 0

    def disarm(self, unit):
        """Stop the timer (not a rollback already running); returns whether it was armed."""
        was_armed = self.is_armed(unit)
        self.runner([self.systemctl, "stop", f"{unit}.timer"])
        # A failed earlier run keeps the name taken until its failure is cleared.
        self.runner([self.systemctl, "reset-failed", f"{unit}.timer", f"{unit}.service"])
        return was_armed

    def arm(self, unit, seconds, script):
        self.disarm(unit)
        self.runner.checked(timer_argv(self.systemd_run, unit, seconds, script))
