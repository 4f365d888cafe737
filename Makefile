# mcfleet: the two commands a new SRE needs (both run as root on Debian).
#   make lab           set up this machine, create the two-datacentre lab, converge it
#   make test          everything CI runs
SHELL := /bin/bash
VENV := .venv/bin
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
LAB_SUITES := bookworm trixie
TEST_SUITES := bullseye bookworm trixie

.PHONY: bootstrap lab lab-lru lab-destroy test lint unit ansible-test ansible-test-venv ansible-test-tree sanity units molecule

bootstrap:
	lab/bootstrap.sh $(LAB_SUITES)

lab: bootstrap
	ansible-playbook -i inventories/lab playbooks/lab_up.yml
	ansible-playbook -i inventories/lab playbooks/site.yml
	@lab/where.py
	@# One reject-mode drill proves the lab fails over; it prints the report's path and figures.
	ansible-playbook -i inventories/lab playbooks/failover_drill.yml \
	  -e drill_shard=mc1001 -e drill_mode=reject -e rejoin_policy=flush

# The LRU comparisons by shadowing on the running lab (playbooks/shadow_lru.yml): bookworm's
# memcached against trixie's, then growth factor 1.25 against 1.07 (at a memory size where both
# hold the same slab memory: see the README). Reports in reports/lru-*.
lab-lru:
	ansible-playbook -i inventories/lab playbooks/shadow_lru.yml -e lru_comparison=release
	ansible-playbook -i inventories/lab playbooks/shadow_lru.yml -e lru_comparison=growth_factor \
	  -e lru_memory_mb=24 -e lru_load_keys=200000 -e lru_value_bytes_min=200 -e lru_value_bytes_max=800

lab-destroy:
	@if [ -x $(VENV)/ansible-playbook ]; then \
	  ansible-playbook -i inventories/lab playbooks/lab_down.yml; \
	else echo "lab-destroy: no .venv here, so no lab was created by this checkout"; fi

# Molecule waits on containers, apt and timers much of the time, and so do pytest's
# integration tests (about half of two cores, measured): pytest, then the static checks (lint,
# ansible-test: no container, no clock), run beside Molecule instead of before it, each on
# its own containers, networks and addresses. Two scenarios at once are no faster: tried
# (drill and proxies beside maintenance), the maintenance's release upgrades took 185-191 s
# each instead of 71-82 s (dpkg is CPU-bound) and make test took as long. Their output goes
# to .cache/pytest.log and .cache/static-checks.log; the end of a log is printed when its part fails, and any part
# failing fails make test. Their checks decide on counts and contents, not on how fast the
# machine is (timed waits are the product's own bounds, far above a loaded machine's delays).
test:
	lab/bootstrap.sh $(TEST_SUITES)
	@mkdir -p .cache; rm -f .cache/pytest.rc .cache/static-checks.rc .cache/pytest-summary.txt
	@( $(MAKE) --no-print-directory unit >.cache/pytest.log 2>&1; echo $$? >.cache/pytest.rc; \
	   $(MAKE) --no-print-directory lint ansible-test >.cache/static-checks.log 2>&1; \
	   echo $$? >.cache/static-checks.rc ) & \
	$(MAKE) --no-print-directory molecule; molecule_rc=$$?; wait; \
	pytest_rc=$$(cat .cache/pytest.rc 2>/dev/null || echo 1); \
	static_rc=$$(cat .cache/static-checks.rc 2>/dev/null || echo 1); \
	echo "pytest (unit, integration_local): rc $$pytest_rc, log in .cache/pytest.log"; \
	[ "$$pytest_rc" = 0 ] || tail -n 80 .cache/pytest.log; \
	echo "static checks (lint, ansible-test): rc $$static_rc, log in .cache/static-checks.log"; \
	[ "$$static_rc" = 0 ] || tail -n 80 .cache/static-checks.log; \
	[ "$$molecule_rc" = 0 ] && [ "$$pytest_rc" = 0 ] && [ "$$static_rc" = 0 ]
	@# pytest's summary again, last, so it is the line a reader (or CI) sees.
	@tail -n 1 .cache/pytest-summary.txt

# Every shell script in the repository (ansible-test's shellcheck only looks at *.sh files,
# and lab/ is not in its copy of the tree, see ansible-test-tree); lab/bootstrap.sh installs it.
SHELL_SCRIPTS := lab/bootstrap.sh lab/build-image.sh lab/reimage.sh lab/restart_file_across_releases.sh .ci/run \
  roles/memcached/files/memcached-check-config roles/memcached/files/memcached-target-candidate \
  roles/memcached_proxy/files/mcfleet-proxy-check
lint:
	ruff check .
	ruff format --check .
	shellcheck $(SHELL_SCRIPTS)
	ansible-lint --profile production

# Plain pytest: the unit tests (also run by `ansible-test units` below) and
# tests/integration_local, which drive ansible-playbook, lab/bootstrap.sh and podman.
unit:
	@mkdir -p .cache
	set -o pipefail; pytest -q -n 2 --dist loadfile tests/unit tests/integration_local 2>&1 | tee .cache/pytest-summary.txt

# ansible-test needs the collection at .../ansible_collections/mcfleet/fleet: it runs on a
# copy of the tracked and untracked-but-not-ignored files, without the .collections link
# and without lab/, molecule/ and benchmarks/: those are this repository's tooling (the
# podman lab, the Molecule scenarios, the benchmarks), run from the checkout with .venv's
# python3, not content Ansible loads from the collection; ansible-test's rules for
# collection content (e.g. no `#!/usr/bin/env python3` shebangs) do not fit them. ruff,
# shellcheck and ansible-lint (make lint) still check them.
# It runs --local in a venv of its own (.cache/ansible-test-venv, from the pins of
# tests/requirements-ansible-test.txt, from PyPI); --docker would need a container registry.
# Each sanity test still gets a venv of ansible-test's making with its pinned tools: pip is
# bootstrapped there by tests/sanity/get_pip.py (ensurepip + PyPI) instead of the script
# ansible-test downloads from ci-files.testing.ansible.com, which is out of reach.
ANSIBLE_TEST_PIP_VERSION := 24.2
GET_PIP := $(HOME)/.ansible/test/cache/get_pip_$(subst .,_,$(ANSIBLE_TEST_PIP_VERSION)).py
ANSIBLE_TEST_TREE := .cache/ansible-test/ansible_collections/mcfleet/fleet
ANSIBLE_TEST_VENV := $(CURDIR)/.cache/ansible-test-venv
ANSIBLE_TEST := cd $(ANSIBLE_TEST_TREE) && PATH=$(ANSIBLE_TEST_VENV)/bin:$$PATH ansible-test
ansible-test: sanity units

ansible-test-venv:
	@want=$$(sha256sum tests/requirements-ansible-test.txt | cut -d' ' -f1); \
	if [ "$$(cat $(ANSIBLE_TEST_VENV)/.requirements.sha256 2>/dev/null)" != "$$want" ]; then \
	  echo "installing tests/requirements-ansible-test.txt into $(ANSIBLE_TEST_VENV)"; \
	  rm -rf $(ANSIBLE_TEST_VENV) && python3 -m venv $(ANSIBLE_TEST_VENV) && \
	  $(ANSIBLE_TEST_VENV)/bin/pip install -q -r tests/requirements-ansible-test.txt && \
	  echo "$$want" >$(ANSIBLE_TEST_VENV)/.requirements.sha256; \
	fi

ansible-test-tree:
	rm -rf $(ANSIBLE_TEST_TREE) && mkdir -p $(ANSIBLE_TEST_TREE)
	git ls-files -z --cached --others --exclude-standard -- . ':!.collections' ':!.venv' ':!.ansible' \
	  ':!lab' ':!molecule' ':!benchmarks' \
	  | xargs -0 -r sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' sh \
	  | tar --null -T - -cf - | tar -xf - -C $(ANSIBLE_TEST_TREE)
	@# A repository of its own: ansible-test lists files with git, and in this checkout
	@# .cache/ is ignored (in the new repository the copied files are untracked, not ignored).
	git -C $(ANSIBLE_TEST_TREE) init -q

# Every sanity test runs, validate-modules included.
sanity: ansible-test-venv ansible-test-tree
	@[ -s $(GET_PIP) ] || install -D -m 0644 tests/sanity/get_pip.py $(GET_PIP)
	$(ANSIBLE_TEST) sanity --local --python 3.11 --color no

units: ansible-test-venv ansible-test-tree
	$(ANSIBLE_TEST) units --local --python 3.11 --color no

# Scenarios by name: a new scenario must be added here.
# Molecule prints "CRITICAL 'molecule/default/molecule.yml' glob failed" on every run:
# it looks for a `default` scenario this repository does not have, and carries on.
# `make molecule MOLECULE_SCENARIOS="drill"` runs some of them.
MOLECULE_SCENARIOS := memcached router drill maintenance proxies
# Each scenario's Ansible log (the playbooks its verify step runs included) is kept in
# .cache/; when a scenario fails, molecule/common/failure_digest.py prints what failed from
# it, last, so it is what the end of a CI log shows.
molecule:
	@mkdir -p .cache
	set -e; for scenario in $(MOLECULE_SCENARIOS); do \
	  rm -f .cache/molecule-$$scenario.log; \
	  ANSIBLE_LOG_PATH=$(CURDIR)/.cache/molecule-$$scenario.log molecule test -s $$scenario \
	    || { python3 molecule/common/failure_digest.py .cache/molecule-$$scenario.log; exit 1; }; \
	done
