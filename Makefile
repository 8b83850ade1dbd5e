# The two commands that set everything up on a fresh Debian machine (root):
#   make demo   converge the demo site in the long-lived nested-KVM container kvmlab-demo
#   make test   lint, sanity, unit tests and the Molecule scenarios
# And: make new-vm NAME=fedora   a new guest as the role vm_fedora of the example project
#                                 (examples/workstation/roles; PROJECT=dir for another project)
#      make bench                 time site runs against the demo -> docs/BENCHMARKS.md
#      make schema                the guest spec's fields, from its argument spec, for the plugins
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
DEMO ?= kvmlab-demo
DEMO_PORT ?= 22220
SCENARIOS ?= default debian13 guests
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export CONTAINERS_CONF := $(CURDIR)/tools/containers.conf
export PY_COLORS := 1
export ANSIBLE_FORCE_COLOR := 1
# The port of the demo's libvirt for the example project's inventories/demo/guests.libvirt.yml.
export KVMLAB_DEMO_PORT := $(DEMO_PORT)

# libvirt-dev, pkg-config, gcc and python3-dev: pip builds libvirt-python (requirements.txt) from them.
# mtools, dosfstools, syslinux, syslinux-common, fdisk, e2fsprogs: tools/harness guest-os writes
# the guest disk's partitions, ESP and root filesystem without mounting anything.
APT_PACKAGES := podman runc debootstrap btrfs-progs openssh-client python3-venv git qemu-utils p7zip-full \
  libvirt-dev pkg-config gcc python3-dev mtools dosfstools syslinux syslinux-common fdisk e2fsprogs

.PHONY: help deps venv image guest-os collection demo demo-destroy new-vm bench schema test lint sanity unit ee molecule clean

help:
	@sed -n '1,6p' Makefile

# OS packages for the harness; apt runs only when one is missing.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

venv: deps $(VENV)/.installed

image: deps
	tools/harness image >/dev/null

# The guest OS disk the test hosts boot their guests from (cached by recipe): a small Debian 12,
# UEFI Secure Boot and BIOS, in $(KVMLAB_CACHE)/guest-os (default /var/cache/kvmlab/guest-os).
guest-os: deps
	tools/harness guest-os

# The collection as its users get it: the tarball `ansible-galaxy collection build` writes,
# installed into the example project's collections/ (examples/workstation, which uses it as a
# user's project would). make demo, make bench and the Molecule scenarios run that installed copy.
EXAMPLE := examples/workstation
GALAXY_VERSION = $(shell sed -n 's/^version: *//p' galaxy.yml)
DIST := .kvmlab/dist
collection: venv
	rm -rf $(DIST) $(EXAMPLE)/collections/ansible_collections/kvmlab
	$(BIN)/ansible-galaxy collection build --force --output-path $(DIST) >/dev/null
	ANSIBLE_COLLECTIONS_PATH=$(EXAMPLE)/collections \
	  $(BIN)/ansible-galaxy collection install --force --no-deps -p $(EXAMPLE)/collections \
	  $(DIST)/kvmlab-hypervisor-$(GALAXY_VERSION).tar.gz >/dev/null
	test -f $(EXAMPLE)/collections/ansible_collections/kvmlab/hypervisor/MANIFEST.json

# The example project's own ansible.cfg (its collections/ and roles/), as a user runs it.
EXAMPLE_RUN := cd $(EXAMPLE) && ANSIBLE_CONFIG=ansible.cfg $(CURDIR)/$(BIN)/ansible-playbook -i inventories/demo \
  -e ansible_port=$(DEMO_PORT)
demo: collection image guest-os
	tools/harness up $(DEMO) $(DEMO_PORT) >/dev/null
	$(EXAMPLE_RUN) site.yml
	@$(EXAMPLE_RUN) -e report_dir=$(CURDIR)/reports -e report_agent_wait=300 report.yml >/dev/null
	@echo; cat reports/$(DEMO).md

# A new guest as its own role, from tools/vm-skeleton, in a project's roles/:
# make new-vm NAME=fedora [PROJECT=examples/workstation]
NAME ?=
PROJECT ?= $(EXAMPLE)
new-vm: venv
	tools/new-vm "$(NAME)" "$(PROJECT)/roles"

# Site runs timed against the demo container (converged first), plus fresh converges on a
# second container at BENCH_PORT: medians of BENCH_RUNS runs, written to docs/BENCHMARKS.md.
BENCH_PORT ?= 22230
BENCH_RUNS ?= 5
# BENCH_ARGS=--boot also times the three guests' boot (the demo's guests run the guest OS).
BENCH_ARGS ?=
bench: collection image guest-os
	tools/harness up $(DEMO) $(DEMO_PORT) >/dev/null
	$(EXAMPLE_RUN) site.yml >/dev/null
	$(PY) tools/bench.py --port $(DEMO_PORT) --fresh-port $(BENCH_PORT) --runs $(BENCH_RUNS) $(BENCH_ARGS)

# The guest spec is defined once, in roles/guest/meta/argument_specs.yml; this writes its fields,
# types, defaults and choices to plugins/module_utils/guest_schema.py (a unit test checks it is current).
schema: venv
	$(PY) tools/gen_guest_schema.py

demo-destroy:
	tools/harness down $(DEMO)

test: venv lint sanity unit ee molecule

lint: venv
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint
	$(BIN)/ruff check plugins tests molecule tools

# ansible-test needs the collection under ansible_collections/<namespace>/<name>, outside any
# git work tree (it lists files with git): copy the tracked and new files there, but not the
# collections/ symlink, which points back here.
# One per checkout, so two checkouts on a machine do not share it.
SANITY_DIR ?= /var/tmp/kvmlab-sanity-$(shell printf %s "$(CURDIR)" | md5sum | cut -c1-8)
# ansible-test keeps its sanity virtualenvs and caches under ~/.ansible/test: give it a home of
# its own next to SANITY_DIR, so nothing is written into the user's own Ansible caches.
SANITY_HOME ?= $(SANITY_DIR)-home
# The pip version ansible-test (ansible-core 2.19) bootstraps in its sanity virtualenvs.
GET_PIP_CACHE := $(SANITY_HOME)/.ansible/test/cache/get_pip_24_2.py
sanity: venv
	install -D -m 0644 tools/get-pip-standin.py $(GET_PIP_CACHE)
	rm -rf $(SANITY_DIR)
	mkdir -p $(SANITY_DIR)/ansible_collections/kvmlab/hypervisor
	git ls-files -z --cached --others --exclude-standard | grep -zv '^collections/' \
	  | xargs -0 cp --parents -t $(SANITY_DIR)/ansible_collections/kvmlab/hypervisor
	cd $(SANITY_DIR)/ansible_collections/kvmlab/hypervisor && \
	  HOME=$(SANITY_HOME) $(CURDIR)/$(BIN)/ansible-test sanity --color --venv --requirements --python 3.11

unit: venv
	$(BIN)/pytest tests/unit

# The execution environment's build context (execution-environment.yml), without building the
# image: `ansible-builder create` with the tarball make collection built ($(DIST)); checks that
# the Containerfile installs the tarball and the EE's requirements. Build the image with
# `ansible-builder build` (after make collection).
EE_CONTEXT ?= .kvmlab/ee-context
ee: collection
	rm -rf $(EE_CONTEXT)
	$(BIN)/ansible-builder create -f execution-environment.yml -c $(EE_CONTEXT) -v 1
	test -s $(EE_CONTEXT)/Containerfile
	test -s $(EE_CONTEXT)/_build/collections/kvmlab-hypervisor-$(GALAXY_VERSION).tar.gz
	for f in requirements.yml requirements.txt bindep.txt; do test -s $(EE_CONTEXT)/_build/$$f; done
	grep -q 'ansible-galaxy collection install' $(EE_CONTEXT)/Containerfile
	@echo "EE context OK: $(EE_CONTEXT)/Containerfile"

molecule: collection image guest-os
	for s in $(SCENARIOS); do $(BIN)/molecule test -s $$s; done

clean:
	rm -rf $(SANITY_DIR) $(SANITY_HOME) $(EE_CONTEXT) $(DIST) $(EXAMPLE)/collections .pytest_cache .ruff_cache
