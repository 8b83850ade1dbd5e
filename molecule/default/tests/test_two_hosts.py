"""Many hypervisors in one run: this scenario's host (the demo site, converged) and a second, fresh
host (a second container from tools/harness) in one inventory, each with its own guests through
host vars, converged in parallel by one ansible-playbook run (forks); one report per host; a host
whose guest spec is refused fails alone while the other converges; the next run is changed=0 on
both. The second host is kept cheap: one BIOS guest, defined but not started."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SECOND = "kvmlab-molecule-second"
UDEV_RULE = "/etc/udev/rules.d/65-kvmlab-kvm.rules"
SOLO = {"name": "solo", "firmware": "bios", "virt_type": "qemu", "state": "shutdown", "memory": "256M", "vcpus": 1,
        "graphics": "none", "video": "none", "disks": [{"name": "solo.qcow2", "pool": "vm", "size": "64M"}]}


def recap(stdout: str) -> dict:
    """{host: {"ok": n, "changed": n, "failed": n, ...}} from the PLAY RECAP."""
    found = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", stdout.rsplit("PLAY RECAP", maxsplit=1)[-1], re.M):
        found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return found


@pytest.fixture(scope="module")
def second(tmp_path_factory):
    """The second host: its container, and an inventory source for it in group hypervisors."""
    harness = str(ROOT / "tools" / "harness")
    up = subprocess.run([harness, "up", SECOND], capture_output=True, text=True, check=False)
    assert up.returncode == 0, up.stderr
    conn = json.loads(up.stdout)
    directory = tmp_path_factory.mktemp("second")

    def write(spec: dict) -> Path:
        host = {"ansible_host": conn["address"], "ansible_port": conn["port"], "ansible_user": conn["user"],
                "ansible_ssh_private_key_file": conn["identity_file"],
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                # Its own guests: none of the demo's VM roles, one plain spec.
                "kvmlab_vm_roles": [], "kvmlab_guests": [spec]}
        path = directory / "second.yml"
        path.write_text(yaml.safe_dump({"all": {"children": {"hypervisors": {"hosts": {SECOND: host}}}}}))
        return path

    yield write
    subprocess.run([harness, "down", SECOND], capture_output=True, check=False)


def both(inventory: Path, *extra: str, playbook: str = "kvmlab.hypervisor.site") -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", os.environ["MOLECULE_INVENTORY_FILE"],
               "-i", str(inventory), playbook, *extra]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", KVMLAB_CHECK_GUARD="0")
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def test_two_hosts_converge_in_one_run_each_with_its_own_guests(host, second, tmp_path):
    first = host.backend.get_hostname()
    inventory = second(SOLO)
    run = both(inventory)
    counts = recap(run.stdout)
    assert run.returncode == 0 and set(counts) == {first, SECOND}, run.stdout[-3000:] + run.stderr[-2000:]
    assert counts[first]["changed"] == 0 and counts[first]["failed"] == 0, run.stdout[-3000:]
    assert counts[SECOND]["changed"] > 0 and counts[SECOND]["failed"] == 0, run.stdout[-3000:]
    harness = [str(ROOT / "tools" / "harness"), "ssh", SECOND]
    listed = subprocess.run([*harness, "virsh -c qemu:///system list --all --name"], capture_output=True, text=True,
                            check=True).stdout.split()
    assert listed == ["solo"]
    assert {"win11", "arch", "kali"} <= set(host.check_output("virsh -c qemu:///system list --all --name").split())
    assert "solo" not in host.check_output("virsh -c qemu:///system list --all --name").split()

    report = both(inventory, "-e", "report_dir=%s" % tmp_path, playbook="kvmlab.hypervisor.report")
    assert report.returncode == 0, report.stdout[-3000:]
    assert sorted(p.name for p in tmp_path.glob("*.md")) == sorted(["%s.md" % first, "%s.md" % SECOND])
    assert "solo" in (tmp_path / ("%s.md" % SECOND)).read_text()
    assert "win11" in (tmp_path / ("%s.md" % first)).read_text()


def test_a_refused_host_fails_alone_and_the_other_converges(host, second):
    first = host.backend.get_hostname()
    host.run_test("rm -f " + UDEV_RULE)  # drift on the good host, for this run to repair
    bad = second(dict(SOLO, memory="lots"))
    run = both(bad)
    counts = recap(run.stdout)
    assert run.returncode != 0, run.stdout[-3000:]
    assert counts[SECOND]["failed"] == 1, run.stdout[-3000:]
    assert "memory" in run.stdout + run.stderr
    assert counts[first]["failed"] == 0 and counts[first]["changed"] >= 1, run.stdout[-3000:]
    assert host.file(UDEV_RULE).exists

    good = second(SOLO)
    again = both(good)
    counts = recap(again.stdout)
    assert again.returncode == 0, again.stdout[-3000:]
    assert counts[first]["changed"] == 0 and counts[SECOND]["changed"] == 0, again.stdout[-3000:]
