# mcfleet: the two commands a new SRE needs (both run as root on Debian).
#   make lab           set up this machine, create the two-datacentre lab, converge it
#   make test          everything CI runs
SHELL := /bin/bash
VENV := .venv/bin
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
LAB_SUITES := bookworm trixie
TEST_SUITES := bullseye bookworm trixie

.PHONY: bootstrap lab lab-destroy test lint unit molecule

bootstrap:
	lab/bootstrap.sh $(LAB_SUITES)

lab: bootstrap
	ansible-playbook -i inventories/lab playbooks/lab_up.yml
	ansible-playbook -i inventories/lab playbooks/site.yml
	@lab/where.py
	@# One reject-mode drill proves the lab fails over; it prints the report's path and figures.
	ansible-playbook -i inventories/lab playbooks/failover_drill.yml \
	  -e drill_shard=mc1001 -e drill_mode=reject -e rejoin_policy=flush

lab-destroy:
	@if [ -x $(VENV)/ansible-playbook ]; then \
	  ansible-playbook -i inventories/lab playbooks/lab_down.yml; \
	else echo "lab-destroy: no .venv here, so no lab was created by this checkout"; fi

test:
	lab/bootstrap.sh $(TEST_SUITES)
	$(MAKE) --no-print-directory lint unit molecule
	@# pytest's summary again, last, so it is the line a reader (or CI) sees.
	@tail -n 1 .cache/pytest-summary.txt

lint:
	ruff check .
	ruff format --check .
	ansible-lint --profile production

unit:
	@mkdir -p .cache
	set -o pipefail; pytest -q tests 2>&1 | tee .cache/pytest-summary.txt

# Scenarios by name, so a new one must be listed (tests/test_repository.py checks).
# Molecule prints "CRITICAL 'molecule/default/molecule.yml' glob failed" on every run:
# it looks for a `default` scenario this repository does not have, and carries on.
MOLECULE_SCENARIOS := memcached router drill
molecule:
	set -e; for scenario in $(MOLECULE_SCENARIOS); do molecule test -s $$scenario; done
