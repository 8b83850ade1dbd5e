"""The collection's public variables: each carries the prefix kvmlab_, no role reads another role's
variables, and every old name fails a run before any change, naming the new one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.renames import (
    RENAMES,
    moved_role_messages,
    renamed_messages,
)

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("host", "storage", "network", "guest", "backup", "restore")
SHIPPED = [ROOT / "playbooks", *(ROOT / "roles" / r for r in ROLES), ROOT / "plugins"]


def _defaults(role: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}


def _spec_options(role: str) -> set[str]:
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    return {name for entry in specs.values() for name in (entry.get("options") or {})}


@pytest.mark.parametrize("role", ROLES)
def test_every_public_variable_is_prefixed_and_in_the_argument_spec(role):
    defaults = _defaults(role)
    assert defaults
    assert [n for n in defaults if not n.startswith("kvmlab_")] == []
    assert set(defaults) == _spec_options(role) & set(defaults) and set(defaults) <= _spec_options(role)


def test_no_two_roles_define_the_same_variable():
    seen: dict[str, str] = {}
    for role in ROLES:
        for name in _defaults(role):
            assert name not in seen, "%s is defined by %s and %s" % (name, seen.get(name), role)
            seen[name] = role


@pytest.mark.parametrize("role", ROLES)
def test_no_role_reads_another_roles_variables(role):
    """Only the site playbook hands one role's variables to another (kvmlab_guest_pools: ...)."""
    others = {n for r in ROLES if r != role for n in _defaults(r)}
    files = [p for p in (ROOT / "roles" / role).rglob("*.yml") if "meta" not in p.parts]
    # Comments may point at the other roles' variables; code may not.
    text = "\n".join(re.sub(r"(?m)^\s*#.*$", "", p.read_text()) for p in files)
    used = {n for n in others if re.search(r"(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])" % n, text)}
    assert used == set()


def test_no_old_name_is_left_in_the_shipped_content():
    """The map's old names appear only in the map itself (and the changelog that tells of it)."""
    pattern = re.compile(r"(?<![A-Za-z0-9_.])(%s)(?![A-Za-z0-9_])" % "|".join(RENAMES))
    left = []
    for base in SHIPPED:
        for path in base.rglob("*"):
            if path.suffix not in (".py", ".yml", ".j2") or path.stem in ("renames", "renamed_variables"):
                continue
            for match in pattern.finditer(path.read_text()):
                line = path.read_text()[: match.start()].count("\n") + 1
                left.append("%s:%d %s" % (path.relative_to(ROOT), line, match.group(1)))
    # guest_spec stays the name of a filter and of the one-spec label of guest_errors.
    left = [x for x in left if not x.endswith(" guest_spec") or "plugins/" not in x]
    assert left == []


def test_every_new_name_is_a_public_variable():
    public = {n for role in ROLES for n in _spec_options(role)}
    assert set(RENAMES.values()) - public == set()


def test_messages_name_the_new_name():
    errors, warnings = renamed_messages({"network_networks": None, "guest_spec": None, "host_reserve": None})
    assert errors == [
        "host_reserve was renamed to kvmlab_host_reserve; rename it where it is set (inventory, group_vars, "
        "playbook vars or -e): the collection no longer reads host_reserve.",
        "network_networks was renamed to kvmlab_networks; rename it where it is set (inventory, group_vars, "
        "playbook vars or -e): the collection no longer reads network_networks.",
        "guest_spec was renamed to kvmlab_guests (as its one entry: kvmlab_guests: [SPEC]); rename it where it "
        "is set (inventory, group_vars, playbook vars or -e): the collection no longer reads guest_spec.",
    ]
    assert warnings == []


def test_linux_system_roles_own_variables_are_left_to_them():
    """storage_pools, storage_volumes and network_allow_restart are also linux-system-roles'
    variables: theirs have another shape and pass; ours fail; the bool only warns."""
    lsr = {"storage_pools": [{"name": "app", "disks": ["sdb"], "type": "lvm", "volumes": [{"name": "x"}]}],
           "storage_volumes": [{"name": "data", "type": "disk", "disks": ["sdc"], "mount_point": "/data"}],
           "network_allow_restart": True}
    errors, warnings = renamed_messages(lsr)
    assert errors == []
    assert len(warnings) == 1 and "rename it to kvmlab_network_allow_restart" in warnings[0]
    ours = {"storage_pools": [{"name": "vm", "path": "/mnt/vm"}],
            "storage_volumes": [{"pool": "vm", "name": "a.qcow2", "capacity": "1G"}]}
    assert [e.split(" ")[0] for e in renamed_messages(ours)[0]] == ["storage_pools", "storage_volumes"]


def test_the_example_sites_vm_roles_left_the_collection():
    """The collection ships no VM roles; an inventory that still names one by the collection's
    prefix is told where it went, and a project's own role passes."""
    assert not list((ROOT / "roles").glob("vm_*"))
    assert sorted(p.name for p in (ROOT / "examples" / "workstation" / "roles").glob("vm_*")) == [
        "vm_arch", "vm_kali", "vm_win11"]
    assert moved_role_messages(["vm_win11", "kvmlab.hypervisor.vm_kali", "someone.else.vm_x"]) == [
        "kvmlab_vm_roles: kvmlab.hypervisor.vm_kali is no longer part of the collection (VM roles belong to your "
        "project); copy the role into your project's roles/ directory (the collection's repository keeps the "
        "example ones in examples/workstation/roles) and list it as vm_kali."]


PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: kvmlab.hypervisor.%s
        tasks_from: validate
"""


@pytest.mark.parametrize("role", ["storage", "network"])
@pytest.mark.parametrize(("extra", "expected"), [
    ({"network_tailscale_enabled": True}, "network_tailscale_enabled was renamed to kvmlab_network_tailscale_enabled"),
    ({"storage_pools": [{"name": "vm", "path": "/srv/vm"}]}, "storage_pools was renamed to kvmlab_storage_pools"),
    ({"storage_pools": [{"name": "app", "disks": ["sdb"]}]}, None),
])
def test_a_real_run_stops_on_an_old_name(tmp_path, role, extra, expected):
    run_validate(tmp_path, role, extra, expected)


def test_a_real_run_stops_on_a_vm_role_of_the_collection(tmp_path):
    run_validate(tmp_path, "guest", {"kvmlab_vm_roles": ["kvmlab.hypervisor.vm_win11"]},
                 "kvmlab_vm_roles: kvmlab.hypervisor.vm_win11 is no longer part of the collection")


def run_validate(tmp_path, role, extra, expected):
    """ansible-playbook itself, on the controller: the role's validate entry point fails with the
    message (the lookup sees inventory and extra vars alike) or passes on linux-system-roles' shape."""
    play = tmp_path / "play.yml"
    play.write_text(PLAY % role)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    bindir = Path(sys.executable).parent
    run = subprocess.run([str(bindir / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
                          "-e", json.dumps(extra)], capture_output=True, text=True, env=env, timeout=120, check=False)
    out = " ".join((run.stdout + run.stderr).split())
    if expected:
        assert run.returncode != 0 and expected in out, out
    else:
        assert run.returncode == 0, out
