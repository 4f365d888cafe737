"""Block a memcached shard's port for a failover drill, and always lift the block again.

The block lives in one dedicated chain (default MCFLEET-DRILL) per address family, reached
by one commented jump rule at the top of INPUT. Nothing else is touched: removal deletes
only jump rules that target that chain, then flushes and deletes the chain.

A rollback script (plain /bin/sh and the same iptables binaries, no Python) is written
before the block goes in, and a systemd timer runs it, so the block lifts by itself if
the controller never comes back.

Every command goes through a CommandRunner, whose prefix (e.g. `ip netns exec NS`) lets
the same code run inside a network namespace; the rollback script carries that prefix too.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

DEFAULT_CHAIN = "MCFLEET-DRILL"
DEFAULT_STATE_DIR = "/run/mcfleet"
MODES = ("reject", "drop")
BACKENDS = ("nf_tables", "legacy")
SSH_PORT = 22
MAX_ROLLBACK_S = 86400
# Only drill chains: a typo must never let the module flush another role's MCFLEET-* chain.
# iptables chain names are limited to 28 characters.
CHAIN_PATTERN = re.compile(r"^MCFLEET-DRILL(-[A-Z0-9]+)*$")
CHAIN_MAX_LENGTH = 28
NETNS_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
JUMP_COMMENT = "mcfleet.fleet.shard_block drill; lifted by its rollback timer"
FAMILIES = ("ipv4", "ipv6")

_FAMILY_TOOLS = {
    # family: (plain binary stem, conntrack -f value)
    "ipv4": ("iptables", "ipv4"),
    "ipv6": ("ip6tables", "ipv6"),
}
_BACKEND_SUFFIX = {"nf_tables": "nft", "legacy": "legacy"}
_CONNTRACK_DELETED = re.compile(r"(\d+) flow entries have been deleted")


class ShardBlockError(Exception):
    """A request or a host state that must stop the module with a clear message."""


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: str
    stderr: str


class CommandRunner:
    """Runs argv lists through `run(argv, data) -> (rc, stdout, stderr)`, behind a fixed prefix."""

    def __init__(self, run, prefix=()):
        self._run = run
        self.prefix = tuple(prefix)

    def argv(self, argv):
        return [*self.prefix, *argv]

    def __call__(self, argv, data=None):
        rc, stdout, stderr = self._run(self.argv(argv), data)
        return CommandResult(rc, stdout or "", stderr or "")

    def checked(self, argv, data=None):
        result = self(argv, data)
        if result.rc != 0:
            raise ShardBlockError(
                f"command failed (rc={result.rc}): {shlex.join(self.argv(argv))}: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result


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


def validate_request(port, mode, sources, chain=DEFAULT_CHAIN):
    """Check every field; errors name the field and the value it got."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ShardBlockError(f"port={port!r}: must be an integer from 1 to 65535")
    if port == SSH_PORT:
        raise ShardBlockError(f"port={port}: that is SSH; a drill never blocks it")
    if mode not in MODES:
        raise ShardBlockError(f"mode={mode!r}: must be one of {', '.join(MODES)}")
    validate_chain(chain)
    networks = []
    for index, source in enumerate(sources or []):
        try:
            network = ipaddress.ip_network(str(source).strip(), strict=True)
        except ValueError as error:
            raise ShardBlockError(
                f"sources[{index}]={source!r}: not an IP address or CIDR network ({error})"
            ) from None
        if network.is_loopback:
            raise ShardBlockError(f"sources[{index}]={source!r}: loopback is never blocked")
        networks.append(network)
    unique = sorted(set(networks), key=lambda net: (net.version, net.network_address, net.prefixlen))
    return BlockRequest(port=port, mode=mode, sources=tuple(unique), chain=chain)


def validate_chain(chain):
    if not isinstance(chain, str) or not CHAIN_PATTERN.match(chain) or len(chain) > CHAIN_MAX_LENGTH:
        raise ShardBlockError(
            f"chain={chain!r}: must be MCFLEET-DRILL or MCFLEET-DRILL-<NAME> "
            f"(capitals and digits, at most {CHAIN_MAX_LENGTH} characters)"
        )


def validate_rollback_after(seconds):
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 < seconds <= MAX_ROLLBACK_S:
        raise ShardBlockError(
            f"rollback_after_s={seconds!r}: must be an integer from 1 to {MAX_ROLLBACK_S}; "
            "a block without a rollback timer is never applied"
        )


def validate_netns(netns):
    if netns is not None and not NETNS_PATTERN.match(netns):
        raise ShardBlockError(f"netns={netns!r}: not a network namespace name")


# --- iptables of one family and one backend --------------------------------------------


def parse_backend(version_output):
    """`iptables -V` prints e.g. 'iptables v1.8.9 (nf_tables)'; before 1.8 only legacy existed."""
    if "(nf_tables)" in version_output:
        return "nf_tables"
    if "(legacy)" in version_output or re.search(r"iptables v1\.[0-7]\.", version_output):
        return "legacy"
    raise ShardBlockError(f"cannot tell the iptables backend from {version_output.strip()!r}")


def detect_backend(runner):
    result = runner.checked(["iptables", "-V"])
    return parse_backend(result.stdout + result.stderr)


def render_rule(command, chain, tokens):
    """One rule as `iptables -S` prints it (and as iptables-restore reads it)."""
    words = [f'"{token}"' if " " in token else token for token in tokens]
    return " ".join([command, chain, *words])


@dataclass
class FamilyState:
    """What one family holds of ours: jump rules in INPUT and the chain's rules."""

    jump_lines: list = field(default_factory=list)
    jump_is_first: bool = False
    chain_exists: bool = False
    chain_lines: list = field(default_factory=list)

    @property
    def present(self):
        return bool(self.jump_lines) or self.chain_exists

    def listing(self, chain):
        lines = list(self.jump_lines)
        if self.chain_exists:
            lines.append(f"-N {chain}")
            lines.extend(self.chain_lines)
        return lines


class Iptables:
    """iptables (or ip6tables) of one backend, limited to the drill chain and its jump."""

    def __init__(self, runner, family, binary, restore_binary):
        self.runner = runner
        self.family = family
        self.binary = binary
        self.restore_binary = restore_binary

    def _run(self, *args):
        return self.runner([self.binary, "-w", *args])

    def available(self):
        return self._run("-S", "INPUT").rc == 0

    def read(self, chain):
        state = FamilyState()
        listing = self.runner.checked([self.binary, "-w", "-S", "INPUT"]).stdout.splitlines()
        input_rules = [line for line in listing if line.startswith("-A INPUT ")]
        state.jump_lines = [line for line in input_rules if shlex.split(line)[-2:] == ["-j", chain]]
        state.jump_is_first = len(state.jump_lines) == 1 and input_rules[0] == state.jump_lines[0]
        chain_listing = self._run("-S", chain)
        if chain_listing.rc == 0:
            state.chain_exists = True
            state.chain_lines = [line for line in chain_listing.stdout.splitlines() if line.startswith("-A ")]
        return state

    def rule_exists(self, chain, tokens):
        return self._run("-C", chain, *tokens).rc == 0

    def matches(self, state, request):
        """True when the family holds exactly the requested rules and one jump at the top."""
        wanted = request.chain_rules(self.family)
        if not wanted:
            return not state.present
        if not (state.chain_exists and state.jump_is_first and len(state.chain_lines) == len(wanted)):
            return False
        if not self.rule_exists("INPUT", request.jump_rule()):
            return False
        return all(self.rule_exists(request.chain, rule) for rule in wanted)

    def apply(self, state, request):
        """Replace the chain's contents and place the jump in one iptables-restore transaction."""
        chain = request.chain
        lines = ["*filter", f":{chain} - [0:0]"]  # declares, or empties, the chain
        lines += [render_rule("-A", chain, rule) for rule in request.chain_rules(self.family)]
        jump_ok = state.jump_is_first and self.rule_exists("INPUT", request.jump_rule())
        if not jump_ok:
            lines += [line.replace("-A INPUT ", "-D INPUT ", 1) for line in state.jump_lines]
            lines.append(render_rule("-I", "INPUT 1", request.jump_rule()))
        lines.append("COMMIT")
        self.runner.checked([self.restore_binary, "-w", "--noflush"], data="\n".join(lines) + "\n")

    def remove(self, state, chain):
        """Delete our jump rules, then flush and delete our chain; nothing else."""
        for line in state.jump_lines:
            self.runner.checked([self.binary, "-w", "-D", *shlex.split(line)[1:]])
        if state.chain_exists:
            self.runner.checked([self.binary, "-w", "-F", chain])
            self.runner.checked([self.binary, "-w", "-X", chain])

    def removal_script_lines(self, request):
        """Shell lines that lift the block with no Python: the same steps as remove()."""
        run = shlex.join(self.runner.argv([self.binary, "-w"]))
        jump = shlex.join(request.jump_rule())
        chain = shlex.quote(request.chain)
        return [
            f"# {self.family}",
            # Bounded loop: a duplicate jump is removed too, and -D failing ends it.
            f"for attempt in 1 2 3 4 5 6 7 8; do {run} -D INPUT {jump} 2>/dev/null || break; done",
            f"{run} -F {chain} 2>/dev/null",
            f"{run} -X {chain} 2>/dev/null",
            f"if {run} -S {chain} >/dev/null 2>&1; then failed=1; fi",
        ]


def family_tables(runner, backend, which):
    """The Iptables of each family for this backend, None where the binary is missing or unusable."""
    suffix = _BACKEND_SUFFIX[backend]
    tables = {}
    for family, (stem, _) in _FAMILY_TOOLS.items():
        binary = which(f"{stem}-{suffix}") or which(stem)
        restore = which(f"{stem}-{suffix}-restore") or which(f"{stem}-restore")
        table = Iptables(runner, family, binary, restore) if binary and restore else None
        tables[family] = table if table and table.available() else None
    if tables["ipv4"] is None:
        raise ShardBlockError(f"iptables ({backend}) is missing or unusable on this host")
    return tables


# --- conntrack ---------------------------------------------------------------------------


def delete_conntrack_entries(runner, conntrack, request, families):
    """Delete tracked TCP flows to the port (from the sources, if any); returns how many went."""
    deleted = 0
    for family in sorted(families):
        base = [conntrack, "-D", "-f", _FAMILY_TOOLS[family][1], "-p", "tcp", "--dport", str(request.port)]
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


def rollback_script(tables, request, paths, backend):
    lines = [
        "#!/bin/sh",
        f"# Written by mcfleet.fleet.shard_block: lifts the drill block on {request.chain} ({backend}).",
        "# Run by the rollback timer if the controller never lifts the block itself.",
        "failed=0",
    ]
    for family in FAMILIES:
        if tables.get(family) is not None:
            lines += tables[family].removal_script_lines(request)
    lines += [f"rm -f {shlex.quote(paths.record)}", 'exit "$failed"', ""]
    return "\n".join(lines)


def write_private_file(path, text, mode=0o600):
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


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
        self.runner.checked(
            [
                self.systemd_run,
                f"--unit={unit}",
                f"--on-active={seconds}s",
                # The default accuracy of one minute would let a 5 s rollback fire a minute late.
                "--timer-property=AccuracySec=100ms",
                "--timer-property=RemainAfterElapse=no",
                "--description=mcfleet shard block rollback",
                "/bin/sh",
                script,
            ]
        )
