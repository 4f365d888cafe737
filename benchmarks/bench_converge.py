"""Idempotent converge of the whole lab: the stock podman connection against mcfleet's setup.

    make lab                                   # the lab must exist and be converged
    .venv/bin/python benchmarks/bench_converge.py [--runs N]

Runs `playbooks/site.yml` on inventories/lab, after one warm-up run that must change
nothing, with:
  stock      containers.podman.podman and the linear strategy (one `podman exec` per step)
  pipelined  mcfleet.fleet.podman_pipelined and the linear strategy (one exec per module)
  chosen     ansible.cfg as it is: Mitogen's strategy and mitogen_podman (one interpreter
             per container)
and, with the chosen setup, the memcached tier (`--tags memcached`) against a plain
8-task memcached role on the same 8 hosts (benchmarks/plain_memcached/). Prints the best
of N runs of each, and the ratios. A figure, not a test: nothing is asserted but that
every run changed nothing.
"""

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
PLAIN_ROLE = REPO / "benchmarks" / "plain_memcached" / "plain_memcached.yml"
LINEAR = {"ANSIBLE_STRATEGY": "linear"}
SETUPS = {
    "stock": (LINEAR, ["-e", "ansible_connection=containers.podman.podman"]),
    "pipelined": (LINEAR, ["-e", "ansible_connection=mcfleet.fleet.podman_pipelined"]),
    "chosen": ({}, []),
}
RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def run(playbook, env_extra, args):
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **env_extra}
    env["ANSIBLE_CALLBACKS_ENABLED"] = ""  # no per-task timing output in the measured runs
    started = time.monotonic()
    result = subprocess.run(
        [str(PLAYBOOK), "-i", str(REPO / "inventories" / "lab"), str(playbook), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    recap = RECAP.findall(result.stdout)
    if result.returncode != 0 or not recap:
        sys.exit(
            f"{playbook.name} {' '.join(args)} failed (rc={result.returncode}):\n{result.stdout[-3000:]}"
        )
    return elapsed, sum(int(changed) for _, changed, _, _ in recap), len(recap)


def best_of(label, runs, playbook, env_extra, args):
    run(playbook, env_extra, args)  # warm-up: first runs may still change something
    times = []
    for _ in range(runs):
        elapsed, changed, hosts = run(playbook, env_extra, args)
        if changed:
            sys.exit(f"{label}: {changed} changes in a run that should be idempotent")
        times.append(elapsed)
    print(f"  {label:<34} {min(times):6.1f} s  (best of {runs}, {hosts} hosts, changed=0)", flush=True)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    site = REPO / "playbooks" / "site.yml"
    print(f"idempotent converge of the lab ({os.cpu_count()} cores):")
    whole = {name: best_of(f"site.yml, {name}", args.runs, site, *SETUPS[name]) for name in SETUPS}
    tier = best_of("memcached tier (--tags memcached)", args.runs, site, {}, ["--tags", "memcached"])
    plain = best_of(
        "plain 8-task memcached role",
        args.runs,
        PLAIN_ROLE,
        {},
        [],
    )
    print(f"stock / chosen: {whole['stock'] / whole['chosen']:.1f}x faster")
    print(f"pipelined / chosen: {whole['pipelined'] / whole['chosen']:.1f}x faster")
    print(f"memcached tier / plain role: {tier / plain:.2f}")


if __name__ == "__main__":
    main()
