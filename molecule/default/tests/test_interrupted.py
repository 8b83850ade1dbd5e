"""Interrupted runs: ansible-playbook killed (SIGKILL, as a closed laptop lid or a lost SSH link
would end it) in the middle of converging the guests, and in the middle of the storage role.
The next run converges, and every guest's disk, NVRAM and TPM state hash as before."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import killed_run
from guest_data import assert_kept, sums

V = "virsh -c qemu:///system "
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "workstation"
DEMO = yaml.safe_load((EXAMPLE / "inventories/demo/group_vars/hypervisors.yml").read_text())["kvmlab_guest_overrides"]
DATA = ("/mnt/vm/win11.qcow2", "/mnt/vm/win11_SECURE_VARS.fd", "/mnt/vm/tpm/tpm2-00.permall",
        "/var/lib/libvirt/images/arch-vm-minimal.qcow2", "/var/lib/libvirt/qemu/nvram/arch_VARS.fd",
        "/mnt/vm/kali-linux-2025.3-qemu-amd64.qcow2")
STOP = ("for g in win11 arch kali; do " + V + "destroy $g; done; "
        "systemctl stop kvmlab-swtpm-win11.socket kvmlab-swtpm-win11.service; true")


def test_killed_while_converging_the_guests(host, site, summary):
    host.run_test(STOP)
    before = sums(host, *DATA)
    # Every guest's definition changes (more memory) and is to stay shut off: the guest task
    # has work for each, and is killed as it starts (the guest in flight may still be defined
    # by the module that runs on the host; the others are not).
    more = {g: dict(DEMO.get(g, {}), memory="3G", state="shutdown") for g in ("win11", "arch", "kali")}
    extra = ("-e", json.dumps({"kvmlab_guest_overrides": more}))
    try:
        killed_run(extra, "TASK [kvmlab.hypervisor.guest : Converge the guests]")
        redefined = [g for g in ("win11", "arch", "kali")
                     if "3145728" in host.check_output(V + "dumpxml --inactive " + g)]
        assert len(redefined) < 3, redefined  # killed before all guests were done
        assert_kept(host, summary, before)
        run = site(*extra)
        assert run.rc == 0 and run.changed > 0, run
        for g in ("win11", "arch", "kali"):
            assert "<memory unit='KiB'>3145728</memory>" in host.check_output(V + "dumpxml --inactive " + g)
        assert site(*extra).changed == 0
        assert_kept(host, summary, before)
    finally:
        restored = site()
    assert restored.rc == 0, restored
    assert site().changed == 0
    summary["interrupted runs recovered"] += 1


def test_killed_in_the_storage_role(host, site, summary):
    # The subvolume unmounted (guests and swtpm stopped first, as they hold files on it): the
    # storage role has to mount it again, and is killed on its way there. The guests stay shut
    # off until the data is compared (a booting firmware writes its NVRAM and TPM state).
    host.run_test(STOP)
    before = sums(host, *DATA)
    off = {g: dict(DEMO.get(g, {}), state="shutdown") for g in ("win11", "arch", "kali")}
    extra = ("-e", json.dumps({"kvmlab_guest_overrides": off}))
    host.run_test("umount /mnt/vm")
    try:
        killed_run(extra, "TASK [kvmlab.hypervisor.storage")
        assert host.run("findmnt /mnt/vm").rc != 0  # killed before the mount
        run = site(*extra)
        assert run.rc == 0 and run.changed > 0, run
        assert host.run_test("findmnt /mnt/vm")
        assert site(*extra).changed == 0
        assert_kept(host, summary, before)
    finally:
        restored = site()
    assert restored.rc == 0, restored
    summary["interrupted runs recovered"] += 1
