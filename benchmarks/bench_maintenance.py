"""Preflight wall time and a rolling restart's orchestration overhead, on the lab.

    make lab                                   # the lab must exist and be converged
    .venv/bin/python benchmarks/bench_maintenance.py [--datacentre codfw] [--runs 5] [--no-restart]

1. `playbooks/preflight.yml --limit <dc>` N times: best and median wall time (the target is
   under 10 s). Every run must pass: a refused preflight is not a figure.
2. One rolling restart of the datacentre (`playbooks/rolling_maintenance.yml
   -e maintenance_action=restart`), with its background traffic, then its report: per host,
   the wall time, the time memcached was out of service, mcfleet's overhead (wall minus the
   restart itself and the warm-up wait; the target is under 15 s) and the client errors
   (the target is 0).

A figure, not a test: nothing is asserted but that each playbook succeeded. The machine's
load average is printed with the figures, since the lab shares its cores.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
REPORTS = REPO / "reports"


def run(playbook: str, *args: str) -> float:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    started = time.monotonic()
    result = subprocess.run(
        [str(PLAYBOOK), "-i", str(REPO / "inventories" / "lab"), str(REPO / "playbooks" / playbook), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"{playbook} {' '.join(args)} failed (rc={result.returncode}):\n{result.stdout[-4000:]}")
    return elapsed


def load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def bench_preflight(datacentre: str, runs: int) -> None:
    times = [run("preflight.yml", "--limit", datacentre) for _ in range(runs)]
    print(
        f"preflight.yml --limit {datacentre}: best {min(times):.1f} s,"
        f" median {statistics.median(times):.1f} s over {runs} runs ({os.cpu_count()} cores, load {load()})",
        flush=True,
    )


def bench_restart(datacentre: str) -> None:
    started = time.time()
    wall = run(
        "rolling_maintenance.yml",
        "--limit",
        datacentre,
        "-e",
        "maintenance_action=restart",
        "-e",
        "maintenance_reason=benchmarks/bench_maintenance.py",
    )
    reports = [
        path
        for path in REPORTS.glob(f"maintenance-{datacentre}-restart-*.json")
        if path.stat().st_mtime >= started
    ]
    if not reports:
        sys.exit(f"the restart succeeded but wrote no report under {REPORTS}")
    report = json.loads(max(reports, key=lambda path: path.stat().st_mtime).read_text())
    print(
        f"rolling restart of {datacentre}: {wall:.1f} s for the playbook, {report['wall_s']} s in the report,"
        f" {report['maintained']} hosts, {report['client_errors']} client errors in"
        f" {report['requests']} requests (load {load()})"
    )
    print(f"  {'host':<12} {'wall s':>7} {'out s':>7} {'restart s':>9} {'overhead s':>10}")
    for host in report["hosts"]:
        if host["status"] != "done":
            print(f"  {host['host']:<12} {host['status']}")
            continue
        print(
            f"  {host['host']:<12} {host['wall_s']:>7.1f} {host.get('out_s') or 0:>7.1f}"
            f" {host['step_seconds'].get('act', 0):>9.1f} {host['overhead_s']:>10.1f}"
        )
    print(f"  mean overhead per host: {report['mean_overhead_s']} s (target: under 15 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datacentre", default="codfw")
    parser.add_argument("--runs", type=int, default=5, help="preflight runs")
    parser.add_argument("--no-restart", action="store_true", help="preflight only")
    args = parser.parse_args()
    bench_preflight(args.datacentre, args.runs)
    if not args.no_restart:
        bench_restart(args.datacentre)


if __name__ == "__main__":
    main()
