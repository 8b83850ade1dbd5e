"""Many guests in one pass: 20 generated guests (kvmlab_guests, no role each) are converged by the
site; the no-op run after is changed=0, and its remote task executions (counted by the
task_count callback) are exactly those of the site's no-op without them, one per role and three
for the guests: the count does not grow with the number of guests. Then the generated guests are
removed with their disks."""

from __future__ import annotations

import json
import os
from pathlib import Path

V = "virsh -c qemu:///system "
# A no-op's remote executions (issue 22): one read of the host for the site, one call per role
# (host_info decides every host task, vm_storage and libvirt_network check everything they own),
# and the guest role's three. A task that makes a remote call on a no-op shows up here.
NOOP_REMOTE = {
    "Read the host's CPUs, memory and what its libvirt guests and pools hold": 1,
    "kvmlab.hypervisor.host : Read the host's OS, packages, KVM device, CPU, units, users, kernel modules"
    " and configuration files": 1,
    "kvmlab.hypervisor.storage : Converge the VM storage subvolume, directories, libvirt pools and volumes": 1,
    "kvmlab.hypervisor.network : Converge the libvirt networks, their DHCP reservations and IP forwarding": 1,
    "kvmlab.hypervisor.guest : Create the guests' missing disks and shared directories": 1,
    "kvmlab.hypervisor.guest : Install and start the swtpm units of the external TPMs": 1,
    "kvmlab.hypervisor.guest : Converge the guests": 1,
}
COUNT = 20
NAMES = ["gen%02d" % i for i in range(COUNT)]


def generated(state: str = "shutdown", **extra) -> list[dict]:
    """Small BIOS guests (64 MiB disk, no console), as a generator would write them."""
    return [dict({"name": name, "firmware": "bios", "cpu_mode": "custom", "cpu_model": "Nehalem", "memory": "128M",
                  "vcpus": 1, "graphics": "none", "state": state,
                  "disks": [{"name": name + ".qcow2", "size": "64M"}]}, **extra) for name in NAMES]


def counted_run(site, tmp_path: Path, specs: list | None, *extra: str):
    """A site run with the remote task executions counted; returns (run, count)."""
    count_file = tmp_path / "count.json"
    args = list(extra)
    if specs is not None:
        vars_file = tmp_path / "guests.json"
        vars_file.write_text(json.dumps({"kvmlab_guests": specs}))
        args += ["-e", "@%s" % vars_file]
    callbacks = ",".join(filter(None, [os.environ.get("ANSIBLE_CALLBACKS_ENABLED"), "check_no_change", "task_count"]))
    run = site(*args, env={"ANSIBLE_CALLBACKS_ENABLED": callbacks, "KVMLAB_TASK_COUNT": str(count_file)})
    count = json.loads(count_file.read_text()) if count_file.exists() else None
    return run, count


def test_twenty_generated_guests_converge_in_a_flat_number_of_remote_tasks(host, site, tmp_path):
    baseline, base_count = counted_run(site, tmp_path, None)
    assert baseline.rc == 0 and baseline.changed == 0, baseline
    try:
        first, _count = counted_run(site, tmp_path, generated())
        assert first.rc == 0, first
        defined = host.check_output(V + "list --all --name").split()
        assert set(NAMES) <= set(defined), defined
        for name in NAMES:
            assert host.check_output(V + "domstate %s" % name) == "shut off"
            assert host.file("/mnt/vm/%s.qcow2" % name).exists
        noop, count = counted_run(site, tmp_path, generated())
        assert noop.rc == 0 and noop.changed == 0, noop
        # The same remote tasks, the same number of times, with 3 guests and with 23.
        assert count["by_task"] == base_count["by_task"], (count, base_count)
        assert count["by_task"] == NOOP_REMOTE, count
    finally:
        gone, _count = counted_run(site, tmp_path, generated("absent", purge=True))
    assert gone.rc == 0, gone
    assert not set(NAMES) & set(host.check_output(V + "list --all --name").split())
    for name in NAMES:
        assert not host.file("/mnt/vm/%s.qcow2" % name).exists
