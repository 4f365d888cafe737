#!/usr/bin/env python3
"""What failed in a Molecule run, short enough to be the last thing a CI log shows.

`make molecule` sets ANSIBLE_LOG_PATH for each scenario, and the playbooks a verify step
runs (rolling maintenance, drills) inherit it, so their own task failures land in the same
log. This prints the failures in that log, newest last, each under the task it belongs to:
the failures a playbook rescued or ignored are marked, since they are expected (a fault
injected on purpose, a wait that retried).

    failure_digest.py .cache/molecule-maintenance.log
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass

# Ansible's log format: "2026-11-30 18:10:30,123 p=4242 u=root n=ansible INFO| message";
# a multi-line message (result_format = yaml) continues on lines without that prefix.
ENTRY = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ p=(\d+) u=\S+ n=\S+(?: \w+)?\s*\| (.*)$")
FAILURE = re.compile(r"^(fatal|failed): \[")
# Inside a long failure message, the lines worth keeping whatever their position.
TELLING = re.compile(r"fatal:|FAILED|[Ee]rror|refused|stopped at|Assertion failed|unreachable|msg:")


@dataclass
class Entry:
    when: str
    pid: str
    lines: list[str]


def read_entries(path: str) -> list[Entry]:
    entries: list[Entry] = []
    with open(path, encoding="utf-8", errors="replace") as log:
        for raw in log:
            line = raw.rstrip("\n")
            match = ENTRY.match(line)
            if match:
                entries.append(Entry(match[1], match[2], [match[3]]))
            elif entries:
                entries[-1].lines.append(line)
    return entries


def shorten(lines: list[str], head: int, tail: int, width: int) -> list[str]:
    """The first and last lines of a message, and any telling line in between."""
    if len(lines) > head + tail:
        middle = [line for line in lines[head:-tail] if TELLING.search(line)]
        kept = lines[:head] + middle[-20:] + [f"  ... ({len(lines)} lines in all)"] + lines[-tail:]
    else:
        kept = lines
    return [line if len(line) <= width else line[:width] + " ..." for line in kept]


def describe(lines: list[str]) -> list[str]:
    """A failure's result: its message, and the telling part of a command's output."""
    head, _, body = "\n".join(lines).partition(" => ")
    try:
        result = json.loads(body)
    except ValueError:
        result = None
    if not isinstance(result, dict):
        return shorten(lines, head=12, tail=25, width=400)
    out = [head]
    for key in ("msg", "rc", "cmd", "assertion", "evaluated_to", "attempts"):
        if key in result:
            out.append(f"  {key}: {json.dumps(result[key])[:1500]}")
    for stream in ("stdout_lines", "stderr_lines"):
        if result.get(stream):
            out.append(f"  {stream}:")
            out.extend("    " + line for line in shorten(result[stream], head=5, tail=25, width=400))
    return out


def digest(entries: list[Entry], last: int) -> list[str]:
    task_by_pid: dict[str, str] = {}
    last_task_index: dict[str, int] = {}
    # (index of the entry, its task, how it ended)
    failures: list[tuple[int, str, str]] = []
    for index, entry in enumerate(entries):
        first = entry.lines[0]
        if first.startswith("TASK ["):
            task_by_pid[entry.pid] = first.split("]")[0] + "]"
            last_task_index[entry.pid] = index
        elif FAILURE.match(first):
            # Ansible logs "...ignoring" as the entry right after an ignored failure.
            following = entries[index + 1].lines[0] if index + 1 < len(entries) else ""
            label = "ignored" if following.startswith("...ignoring") else "FAILED"
            failures.append((index, task_by_pid.get(entry.pid, "TASK [?]"), label))
    # The log does not say which failure a block rescued: a playbook that ran another task
    # after the failure had rescued it (or was retrying it).
    out: list[str] = []
    for index, task, label in failures[-last:]:
        entry = entries[index]
        if label == "FAILED" and last_task_index.get(entry.pid, -1) > index:
            label = "rescued, retried, or another host's"
        out.append(f"--- {entry.when} pid {entry.pid} {task} ({label})")
        out.extend(describe(entry.lines))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("log", help="the ANSIBLE_LOG_PATH of the failed run")
    parser.add_argument("--last", type=int, default=8, help="how many failures to print (newest)")
    args = parser.parse_args()
    try:
        entries = read_entries(args.log)
    except FileNotFoundError:
        print(f"failure_digest: no log at {args.log} (the run failed before Ansible started)")
        return 0
    lines = digest(entries, args.last)
    print(f"===== what failed, from {args.log} =====")
    print("\n".join(lines) if lines else "no task failure in the log: see Molecule's own error above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
