"""Adding a guest is one new role and one inventory line, and touches no other guest."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

V = "virsh -c qemu:///system "
ROOT = Path(__file__).resolve().parents[3]
DEMO = yaml.safe_load((ROOT / "examples/workstation/inventories/demo/group_vars/hypervisors.yml").read_text())


def changed_items(stdout: str) -> list[tuple]:
    """(task name, loop item or None) of every result that reported changed."""
    out, task = [], None
    for line in stdout.splitlines():
        header = re.match(r"TASK \[(.*)\]", line)
        if header:
            task = header.group(1)
        elif line.startswith("changed:"):
            item = re.search(r"\(item=(.*?)\)", line)
            out.append((task, item.group(1) if item else None))
    return out


def test_new_vm_changes_only_the_new_guest(host, site, guest, tmp_path):
    name = "n%s" % uuid.uuid4().hex[:6]
    made = subprocess.run([sys.executable, str(ROOT / "tools/new_vm.py"), name, str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    role = "vm_" + name
    assert "its spec (defaults/main.yml) is valid" in made.stdout
    assert (tmp_path / role / "defaults/main.yml").read_text().startswith("---\n# The guest " + name)

    before = {g: host.check_output(V + "dumpxml --inactive " + g) for g in ("win11", "arch", "kali")}
    # The demo inventory plus one line (and, as for win11 and arch, TCG for a UEFI guest here;
    # a small disk and memory for the container).
    extra = json.dumps({
        "kvmlab_vm_roles": [*DEMO["kvmlab_vm_roles"], role],
        "kvmlab_guest_overrides": dict(DEMO["kvmlab_guest_overrides"], **{name: {
            "virt_type": "qemu", "cpu_mode": "maximum", "memory": "256M",
            "disks": [{"name": name + ".qcow2", "pool": "vm", "size": "64M"}]}})})
    # The new role in a project's roles/ (here tmp_path), beside the example project's.
    roles = {"ANSIBLE_ROLES_PATH": "%s:%s" % (tmp_path, ROOT / "examples" / "workstation" / "roles")}
    try:
        run = site("-e", extra, "-v", env=roles)
        assert run.rc == 0, run
        assert run.changed == 2, run  # the new guest's disk and domain
        assert changed_items(run.stdout) == [
            ("kvmlab.hypervisor.guest : Create the guests' missing disks and shared directories", None),
            ("kvmlab.hypervisor.guest : Converge the guests", None)], run
        # The one call converged all guests; only the new one was defined and started.
        assert re.search(r"\b%s:\s+actions:\s+- define\s+- start" % name, run.stdout), run
        for other in ("win11", "arch", "kali"):
            assert re.search(r"\b%s:\s+actions: \[\]" % other, run.stdout), run
        assert host.check_output(V + "domstate " + name) == "running"
        after = {g: host.check_output(V + "dumpxml --inactive " + g) for g in before}
        assert after == before, "another guest's definition changed"
        assert site("-e", extra, env=roles).changed == 0
    finally:
        guest({"name": name, "state": "absent", "purge": True, "force_stop": True, "shutdown_timeout": 1,
               "disks": [{"name": name + ".qcow2", "pool": "vm", "size": "64M"}]})
