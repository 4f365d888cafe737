"""Running iptables and friends: argv lists behind an optional prefix (e.g. `ip netns exec NS`)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass


class NetfilterError(Exception):
    """A request or a host state that must stop the module with a clear message."""


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: str
    stderr: str


class CommandRunner:
    """Runs argv lists through `run(argv, data) -> (rc, stdout, stderr)`, behind a fixed prefix.

    The prefix lets the same code work inside a network namespace (`ip netns exec NS`);
    shell lines rendered with argv() carry it too.
    """

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
            raise NetfilterError(
                f"command failed (rc={result.rc}): {shlex.join(self.argv(argv))}: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result


# `ip netns add` names become file names under /run/netns (ip-netns(8)).
NETNS_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def validate_netns(netns, field="netns"):
    if netns is not None and (not isinstance(netns, str) or not NETNS_PATTERN.match(netns)):
        raise NetfilterError(f"{field}={netns!r}: not a network namespace name")
    return netns


def netns_prefix(netns):
    """The argv prefix that runs a command in network namespace `netns` (None: no prefix)."""
    return ["ip", "netns", "exec", netns] if netns else []
