#!/usr/bin/env python3
"""Kill the controller at every step of a rolling maintenance on the lab, and check the fleet.

For each kill point, a rolling maintenance of one datacentre starts; as soon as the run's
journal (progress.jsonl) records that step for the first host, the controller's whole process
group gets SIGKILL, so the step after it is the one in progress. Then, with no controller:
  - wait for the host's rollback timer (it brings memcached back, then lifts the block);
  - on every memcached host of the datacentre: no MCFLEET-* rule, memcached active, not masked;
  - the shard was out of service no longer than the rollback time plus 30 s;
  - nothing acknowledged is lost: canary keys written through the router before the run
    (mcfleet.fleet's FailoverVerifier, which also finds each one's shard) are read from their
    shards again. Every one must still be there, except on the maintained shard once the
    kill came after its stop: a restart empties a shard by design, and those are counted as
    "emptied", not lost;
then the same command runs again (the documented lock override names the kill), and must
finish with 0 client errors. One JSON line per kill point, and a summary, on stdout and in
--report.

  .venv/bin/python3 lab/kill_points.py --limit codfw --rollback-s 30 \
      [--points block,stop,act] [--report reports/kill-points-restart.json]
  ... --action upgrade --rollback-s 180 --target-release trixie --points stop,act \\
      --skip mc2002,mc2003 --reset-release bookworm   (in place is one-way: each point reimages back)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The collection, as Ansible finds it (.collections/ansible_collections/mcfleet/fleet -> REPO).
sys.path.insert(0, str(REPO / ".collections"))
# The controller's kill, shared with the Molecule scenarios that kill it too.
sys.path.insert(0, str(REPO / "molecule" / "common"))

from ansible_collections.mcfleet.fleet.plugins.module_utils.failover_verify import (  # noqa: E402
    FailoverVerifier,
    value_version,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.shard_block import (  # noqa: E402
    DEFAULT_STATE_DIR,
    DrillPaths,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology  # noqa: E402
from kill_controller import kill_controller  # noqa: E402

CANARIES = 300
# The journal's steps of one host, in order (plugins/module_utils/maintenance_progress.py):
# killed right after step X is recorded, the controller dies inside the step after X.
POINTS = (
    "preflight", "canaries", "block", "failover", "stop", "act",
    "configure", "start", "health", "invalidate", "unblock", "routers", "catch_up",
)  # fmt: skip
SLACK_S = 30
# What a block that survives reboots keeps on disk (shard_block's survive_reboot: the rollback's
# copy and the boot unit), all gone once the rollback or the unblock has run.
BOOT_FILES = " ".join(shlex.quote(path) for path in DrillPaths(DEFAULT_STATE_DIR, "MCFLEET-MAINT").boot_files)
# memcached's state, the block's rules, and how many of BOOT_FILES are left.
STATE_SCRIPT = (
    'printf \'%s %s %s %s\\n\' "$(systemctl is-active memcached)" "$(systemctl is-enabled memcached)" '
    "\"$( (iptables-save; ip6tables-save) 2>/dev/null | grep -c 'MCFLEET-DRILL\\|MCFLEET-MAINT')\" "
    f'"$(ls -d {BOOT_FILES} 2>/dev/null | grep -c .)"'
)


def lab_model():
    """The topology model of the lab inventory, built as the playbooks build it."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(REPO / "inventories" / "lab")])
    variables = VariableManager(loader=loader, inventory=inventory)
    groups = {name: [host.name for host in group.get_hosts()] for name, group in inventory.groups.items()}
    hostvars = {host.name: variables.get_vars(host=host) for host in inventory.get_hosts()}
    return build_topology(groups, hostvars)


def verifier(model: dict, datacentre: str) -> FailoverVerifier:
    """Canaries through the datacentre's first router at its lab address, as the run's client."""
    dc = model["datacentres"][datacentre]
    router = dc["routers"][0]
    engine = model["routers"][router["host"]]["engine"]
    return FailoverVerifier(
        router={**router, "engine": engine},
        shards=dc["main"],
        gutter=dc["gutter"],
        route_prefix=dc["route_prefix"],
    )


def write_canaries(model: dict, datacentre: str, settle_s: float = 60) -> tuple[dict, dict]:
    """Canaries written and located before the run: (the verifier's result, its state).

    Written again until every one is acknowledged and stored on its own main shard (at most
    `settle_s`): right after a reset the router may still hold a reimaged server as bad, and
    send its keys to the gutter, where they have no home shard to be checked on.
    """
    deadline = time.monotonic() + settle_s
    while True:
        check = verifier(model, datacentre)
        try:
            result, state = check.before(CANARIES)
        finally:
            check.close()
        at_home = sum(1 for canary in state["canaries"] if canary["acked"] and canary["home"])
        if at_home == CANARIES or time.monotonic() > deadline:
            return result, state
        time.sleep(2)


def acknowledged_kept(model: dict, datacentre: str, state: dict, emptied_host: str | None) -> dict:
    """Reads every acknowledged canary from its own shard: kept, emptied (on `emptied_host`,
    restarted by design) or lost (anywhere else, or on a shard that was never stopped)."""
    check = verifier(model, datacentre)
    counts = {"acknowledged": 0, "kept": 0, "emptied": 0, "lost": 0, "lost_on": {}}
    try:
        by_home: dict[str, list[dict]] = {}
        for canary in state["canaries"]:
            if canary["acked"] and canary["home"]:
                by_home.setdefault(canary["home"], []).append(canary)
        for home, canaries in by_home.items():
            shard = next(server for server in check.shards if server.host == home)
            values = shard.get_many([canary["key"] for canary in canaries])
            for canary in canaries:
                counts["acknowledged"] += 1
                if value_version(values.get(canary["key"])) == canary["acked"]:
                    counts["kept"] += 1
                elif home == emptied_host:
                    counts["emptied"] += 1
                else:
                    counts["lost"] += 1
                    counts["lost_on"][home] = counts["lost_on"].get(home, 0) + 1
    finally:
        check.close()
    return counts


def lab_hosts(datacentre: str) -> list[str]:
    ansible = str(REPO / ".venv/bin/ansible")
    listed = subprocess.run(
        [ansible, "-i", "inventories/lab", f"{datacentre}:&memcached", "--list-hosts"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout  # fmt: skip
    return sorted(line.strip() for line in listed.splitlines()[1:] if line.strip())


def host_state(host: str) -> dict:
    out = subprocess.run(
        ["podman", "exec", f"mcfleet-{host}", "sh", "-c", STATE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    active, enabled, rules, boot_files = [*out, "?", "?", "?", "?"][:4]
    return {
        "active": active,
        "enabled": enabled,
        "rules": int(rules) if rules.isdigit() else -1,
        "boot_files": int(boot_files) if boot_files.isdigit() else -1,
    }


def restored(state: dict) -> bool:
    return (
        state["active"] == "active"
        and not state["enabled"].startswith("masked")
        and state["rules"] == 0
        and state["boot_files"] == 0
    )


def journal(path: Path) -> list[dict]:
    entries = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


def rollback_expiry(host: str) -> float | None:
    read = subprocess.run(
        ["podman", "exec", f"mcfleet-{host}", "cat", "/run/mcfleet/mcfleet-maint.json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if read.returncode != 0:
        return None
    return datetime.fromisoformat(json.loads(read.stdout)["expires_at"]).timestamp()


def kill_at(
    point: str, command: list[str], run_dir: Path, first_host: str, log: Path, timeout_s: float
) -> dict:
    progress = run_dir / "progress.jsonl"
    seen = len(journal(progress))
    started = time.time()
    with log.open("wb") as out:
        run = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO
        )
    result: dict = {"point": point}
    try:
        while True:
            new = journal(progress)[seen:]
            if any(e.get("host") == first_host and e.get("step") == point for e in new):
                break
            if run.poll() is not None:
                result["error"] = f"the run exited (rc {run.returncode}) before {first_host} recorded {point}"
                return result
            if time.time() - started > timeout_s:
                result["error"] = f"{first_host} did not record {point} within {timeout_s} s"
                return result
            time.sleep(0.1)
    finally:
        if run.poll() is None:
            kill_controller(run)
        run.wait()
    result["killed_at"] = time.time()
    result["killed_after_s"] = round(result["killed_at"] - started, 1)
    blocks = [
        e["t"] for e in journal(progress)[seen:] if e.get("host") == first_host and e.get("step") == "block"
    ]
    result["blocked_at"] = blocks[0] if blocks else None
    return result


def reset_to_release(hosts: list[str], release: str, log: Path) -> None:
    """Reimage (lab/reimage.sh) each host that does not run `release`, then configure them."""
    behind = []
    for host in hosts:
        codename = subprocess.run(
            ["podman", "exec", f"mcfleet-{host}", "sh", "-c", ". /etc/os-release; echo $VERSION_CODENAME"],
            capture_output=True, text=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        if codename != release:
            behind.append(host)
    if not behind:
        return
    with log.open("wb") as out:
        for host in behind:
            reimage = [str(REPO / "lab/reimage.sh"), f"mcfleet-{host}", release]
            subprocess.run(reimage, stdout=out, stderr=out, check=True)
        subprocess.run(
            [str(REPO / ".venv/bin/ansible-playbook"), "-i", "inventories/lab", "playbooks/site.yml",
             "--limit", ",".join(behind)],
            stdout=out, stderr=out, check=True, cwd=REPO,
        )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", default="codfw")
    parser.add_argument("--action", default="restart", choices=("restart", "upgrade"))
    parser.add_argument("--target-release", default="trixie")
    parser.add_argument("--rollback-s", type=int, default=30)
    parser.add_argument("--points", default=",".join(POINTS))
    parser.add_argument("--report", default="")
    parser.add_argument(
        "--skip", default="", help="hosts the run leaves out (comma-separated); their state is still checked"
    )
    parser.add_argument(
        "--reset-release",
        default="",
        help="before each point, reimage every host not on this release and configure it (an "
        "in-place upgrade is one-way)",
    )
    args = parser.parse_args()
    points = [p for p in args.points.split(",") if p]
    unknown = sorted(set(points) - set(POINTS))
    if unknown:
        parser.error(f"--points: {', '.join(unknown)} not among {', '.join(POINTS)}")

    hosts = lab_hosts(args.limit)
    first_host = next(h for h in hosts if not h.startswith("mc-gp"))
    run_dir = REPO / "reports" / f"maintenance-{args.limit}-{args.action}"
    skipped = [host for host in args.skip.split(",") if host]
    run_limit = ":".join([args.limit, *(f"!{host}" for host in skipped)])
    # Extra variables as JSON: key=value words would split the reason at its spaces.
    extra = {
        "maintenance_action": args.action,
        "maintenance_reason": f"kill-point matrix ({args.action})",
        "maintenance_rollback_s": args.rollback_s,
    }
    if args.action == "upgrade":
        extra.update(target_release=args.target_release, upgrade_method="in_place")
    playbook = [
        str(REPO / ".venv/bin/ansible-playbook"),
        "-i",
        "inventories/lab",
        "playbooks/rolling_maintenance.yml",
    ]
    command = [*playbook, "--limit", run_limit, "-e", json.dumps(extra)]
    env_note = {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    os.environ.update(env_note)
    log_dir = REPO / "reports" / "kill-points"
    log_dir.mkdir(parents=True, exist_ok=True)

    model = lab_model()
    results = []
    for point in points:
        if args.reset_release:
            reset_to_release(hosts, args.reset_release, log_dir / f"{args.action}-{point}-reset.log")
        before, canary_state = write_canaries(model, args.limit)
        result = kill_at(point, command, run_dir, first_host, log_dir / f"{args.action}-{point}.log", 600)
        if "error" not in result:
            # The traffic the dead controller started is bounded; end it now (it polls its stop file).
            (run_dir / "traffic.stop").touch()
            expiry = rollback_expiry(first_host)
            deadline = (expiry or result["killed_at"]) + SLACK_S
            states = {}
            while time.time() < deadline + 60:
                states = {host: host_state(host) for host in hosts}
                if all(restored(s) for s in states.values()):
                    break
                time.sleep(1)
            restored_at = time.time()
            result["hosts"] = states
            result["all_restored"] = all(restored(s) for s in states.values())
            result["rollback_expiry_known"] = expiry is not None
            out_from = result["blocked_at"]
            result["out_of_service_s"] = round(restored_at - out_from, 1) if out_from else 0.0
            result["within_rollback_plus_30s"] = result["out_of_service_s"] <= args.rollback_s + SLACK_S
            # Killed after the stop: the maintained shard was restarted, so it is empty by design.
            stopped = POINTS.index(point) >= POINTS.index("stop")
            result["canaries"] = acknowledged_kept(
                model, args.limit, canary_state, first_host if stopped else None
            )
            result["canaries"]["written_before"] = before["acknowledged"]
            # The same command again; the lock of the dead run is broken with the documented override.
            override = {
                "maintenance_break_lock": f"kill-point matrix: killed after {point}, every host restored"
            }
            rerun = subprocess.run(
                [*command, "-e", json.dumps(override)], capture_output=True, text=True, cwd=REPO
            )
            (log_dir / f"{args.action}-{point}-rerun.log").write_text(rerun.stdout + rerun.stderr)
            result["rerun_rc"] = rerun.returncode
            summary = [
                line for line in rerun.stdout.splitlines() if "client errors" in line and "finished" in line
            ]
            result["rerun_summary"] = summary[-1].strip().strip('"') if summary else None
            result["rerun_client_errors"] = (
                int(summary[-1].split("client errors ")[1].split("/")[0]) if summary else None
            )
            result["ok"] = (
                result["all_restored"]
                and result["within_rollback_plus_30s"]
                and result["canaries"]["lost"] == 0
                and result["canaries"]["acknowledged"] == before["acknowledged"] > 0
                and result["rerun_rc"] == 0
                and result["rerun_client_errors"] == 0
            )
        else:
            result["ok"] = False
        results.append(result)
        print(json.dumps(result), flush=True)

    summary = {
        "action": args.action,
        "limit": args.limit,
        "rollback_s": args.rollback_s,
        "points": len(results),
        "ok": sum(1 for r in results if r.get("ok")),
        "max_out_of_service_s": max((r.get("out_of_service_s") or 0) for r in results) if results else None,
        "rerun_client_errors": sum((r.get("rerun_client_errors") or 0) for r in results),
        "acknowledged_lost": sum((r.get("canaries") or {}).get("lost", 0) for r in results),
    }
    print(json.dumps({"summary": summary}), flush=True)
    if args.report:
        Path(args.report).write_text(json.dumps({"summary": summary, "results": results}, indent=2) + "\n")
    return 0 if summary["ok"] == summary["points"] else 1


if __name__ == "__main__":
    sys.exit(main())
