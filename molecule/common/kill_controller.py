#!/usr/bin/env python3
"""The controller dies mid-drill or mid-maintenance: start the playbook, SIGKILL its whole
process group as soon as the block's chain is on the shard (or, with --journal and --step, as
soon as the run's journal records that step), then watch the shard until its own rollback
timer has removed every rule of that chain. With --unit, also reads that unit's state once
the rules are gone (a maintenance's timer brings memcached back first). Prints one JSON object.

Only `podman exec` into the scenario's shard container and the playbook are run.
Used by the drill scenario (chain MCFLEET-DRILL) and the maintenance one (MCFLEET-MAINT).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from datetime import datetime


def descendants(root: int) -> list[int]:
    """Every process below `root`, whatever session it moved to (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The parent is the 4th field of stat, after the command name in parentheses.
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_controller(process: subprocess.Popen) -> None:
    """SIGKILL the controller started with start_new_session, like a lost power supply.

    Mitogen's multiplexer moves to a session of its own, so killpg alone leaves it alive
    (and with it a playbook that goes on running); its descendants are killed one by one.
    """
    strays = descendants(process.pid)
    os.killpg(process.pid, signal.SIGKILL)
    for pid in strays:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


SAVERS = ("iptables-save", "ip6tables-save", "iptables-legacy-save", "ip6tables-legacy-save")


def shard_rules(container: str, chain: str) -> list[str]:
    """Every line of every iptables backend and family on the shard that names the chain."""
    script = "; ".join(f"command -v {s} >/dev/null && {s} 2>/dev/null" for s in SAVERS) + "; true"
    out = subprocess.run(
        ["podman", "exec", container, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if chain in line]


def shard_file(container: str, path: str) -> str | None:
    run = subprocess.run(
        ["podman", "exec", container, "cat", path], capture_output=True, text=True, timeout=60
    )
    return run.stdout if run.returncode == 0 else None


def timer_active(container: str, unit: str) -> bool:
    run = subprocess.run(
        ["podman", "exec", container, "systemctl", "is-active", f"{unit}.timer"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return run.stdout.strip() == "active"


def journal_steps(path: str | None) -> int:
    """How many lines the journal holds now (a resumed run's journal has old ones)."""
    if not path or not os.path.exists(path):
        return 0
    with open(path, errors="replace") as stream:
        return sum(1 for _line in stream)


def killed_now(args, journal_seen: int) -> bool:
    """Whether the kill point is reached: the step in the journal, else the block on the shard."""
    if not (args.journal and args.step):
        return bool(shard_rules(args.container, args.chain))
    if not os.path.exists(args.journal):
        return False
    with open(args.journal, errors="replace") as stream:
        for line in list(stream)[journal_seen:]:
            try:
                if json.loads(line).get("step") == args.step:
                    return True
            except ValueError:
                continue
    return False


def unit_state(container: str, unit: str) -> str:
    run = subprocess.run(
        [
            "podman",
            "exec",
            container,
            "sh",
            "-c",
            f"echo $(systemctl is-active {unit}) $(systemctl is-enabled {unit})",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return run.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--container", required=True, help="the shard's container")
    parser.add_argument("--log", required=True, help="where the killed playbook's output goes")
    parser.add_argument(
        "--work-dir", required=True, help="where the run's traffic.stop files live (one level down)"
    )
    parser.add_argument("--chain", default="MCFLEET-DRILL")
    parser.add_argument("--record", default="/run/mcfleet/mcfleet-drill.json")
    parser.add_argument("--journal", help="the run's progress.jsonl: kill once it records --step")
    parser.add_argument("--step", help="the journal step after which the controller dies (e.g. stop)")
    parser.add_argument("--unit", help="a unit on the shard whose state is read after the lift (memcached)")
    parser.add_argument("--block-timeout", type=float, default=240)
    parser.add_argument("--lift-slack", type=float, default=30, help="watch this long past the expiry")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- ansible-playbook ...")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    result: dict = {"command": command}
    started = time.time()
    with open(args.log, "wb") as log:
        # Its own session, so the kill takes ansible-playbook and its workers at once,
        # like a controller that lost power.
        drill = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    journal_seen = journal_steps(args.journal)
    try:
        while not killed_now(args, journal_seen):
            if drill.poll() is not None:
                result["error"] = f"the drill exited (rc {drill.returncode}) before the block was seen"
                print(json.dumps(result))
                return 1
            if time.time() - started > args.block_timeout:
                result["error"] = (
                    f"no {args.step or args.chain} on {args.container} within {args.block_timeout} s"
                )
                print(json.dumps(result))
                return 1
            time.sleep(0.2)
        result["block_seen_after_start_s"] = round(time.time() - started, 3)
    finally:
        if drill.poll() is None:
            kill_controller(drill)
    killed_at = time.time()
    drill.wait()
    result["killed"] = drill.returncode == -signal.SIGKILL
    result["rules_at_kill"] = shard_rules(args.container, args.chain)
    record_text = shard_file(args.container, args.record)
    record = json.loads(record_text) if record_text else {}
    expires_at = datetime.fromisoformat(record["expires_at"]).timestamp() if record else None
    result["rollback_after_s"] = record.get("rollback_after_s")
    result["timer_unit"] = record.get("timer_unit")
    result["timer_active_after_kill"] = bool(record) and timer_active(args.container, record["timer_unit"])
    # On a loaded machine the block may be seen, and the timer read, after it already fired.
    result["timer_read_before_expiry"] = expires_at is not None and time.time() < expires_at

    # The traffic generator ran detached (async) and is bounded; end it now so the next
    # drill has the router to itself. This does not touch the shard.
    for drill_dir in pathlib.Path(args.work_dir).iterdir():
        if drill_dir.is_dir():
            (drill_dir / "traffic.stop").touch()

    deadline = (expires_at or killed_at) + args.lift_slack
    rules = result["rules_at_kill"]
    while rules and time.time() < deadline:
        time.sleep(0.5)
        rules = shard_rules(args.container, args.chain)
    cleared_at = time.time()
    result.update(
        rules_left=len(rules),
        rules_left_lines=rules,
        cleared_after_kill_s=round(cleared_at - killed_at, 3) if not rules else None,
        # Seconds between the timer's stated expiry (whole seconds, from the record) and the
        # moment the watcher saw the rules gone; the watcher polls every ~0.5 s plus podman exec.
        cleared_after_expiry_s=round(cleared_at - expires_at, 3) if expires_at and not rules else None,
        timer_active_after_lift=bool(record) and timer_active(args.container, record["timer_unit"]),
    )
    if args.unit:
        result["unit_after_lift"] = unit_state(args.container, args.unit)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
