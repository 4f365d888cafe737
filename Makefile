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

lab-destroy:
	@if [ -x $(VENV)/ansible-playbook ]; then \
	  ansible-playbook -i inventories/lab playbooks/lab_down.yml; \
	else echo "lab-destroy: no .venv here, so no lab was created by this checkout"; fi

test:
	lab/bootstrap.sh $(TEST_SUITES)
	$(MAKE) --no-print-directory lint unit molecule

lint:
	ruff check .
	ruff format --check .
	ansible-lint --profile production

unit:
	pytest -q tests

molecule:
	molecule test --all
