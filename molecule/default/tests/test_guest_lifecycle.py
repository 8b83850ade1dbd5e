"""Guest data safety and lifecycle: disks, NVRAM and TPM state survive redefinition and
state: absent; firmware changes need reset_nvram; shutdown is graceful unless force_stop."""

from __future__ import annotations

import json
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from guest_data import assert_kept, sums

DEMO_VARS = Path(__file__).resolve().parents[3] / "examples/workstation/inventories/demo/group_vars/hypervisors.yml"
DEMO_OVERRIDES = yaml.safe_load(DEMO_VARS.read_text())["kvmlab_guest_overrides"]

V = "virsh -c qemu:///system "
# A small UEFI guest under TCG (UEFI does not run under KVM in this container).
TCG = {"virt_type": "qemu", "cpu_mode": "maximum", "memory": "256M", "vcpus": 1, "graphics": "none",
       "video": "none", "interfaces": []}
# A small BIOS guest under KVM, as kali in the demo inventory.
KVM_BIOS = {"firmware": "bios", "cpu_mode": "custom", "cpu_model": "Nehalem", "memory": "128M", "vcpus": 1,
            "graphics": "none", "video": "none", "interfaces": []}


def wait_for(host, command: str, seconds: int = 60) -> None:
    deadline = time.monotonic() + seconds
    while host.run(command).rc != 0:
        assert time.monotonic() < deadline, "timed out waiting for: " + command
        time.sleep(1)


@pytest.fixture
def name(host):
    """A fresh guest name; whatever the test leaves is purged."""
    value = "t%s" % uuid.uuid4().hex[:6]
    yield value
    host.run("%sdestroy %s; %sundefine %s --nvram --tpm --remove-all-storage" % (V, value, V, value))
    host.run("rm -f /mnt/vm/%s* /var/lib/libvirt/qemu/nvram/%s*" % (value, value))


def test_emulator_tpm_nvram_and_disk_survive_redefinition_and_absent(host, guest, name, summary):
    spec = dict(TCG, name=name, secure_boot=True, tpm="emulator", disks=[{"name": name + ".qcow2", "size": "64M"}])
    run = guest(spec)
    assert run.rc == 0 and run.changed > 0, run
    uid = host.check_output(V + "domuuid " + name)
    tpm_state = "/var/lib/libvirt/swtpm/%s/tpm2/tpm2-00.permall" % uid
    nvram = "/var/lib/libvirt/qemu/nvram/%s_VARS.fd" % name
    wait_for(host, "test -s " + tpm_state)  # the firmware has started the TPM
    host.run_test(V + "destroy " + name)  # so the files hold still
    assert host.file(tpm_state).mode & 0o077 == 0, "TPM state must not be readable by others"
    before = sums(host, "/mnt/vm/%s.qcow2" % name, nvram, tpm_state)

    # A change that forces a redefinition.
    bigger = guest(dict(spec, memory="320M", state="shutdown"), "--diff")
    assert bigger.rc == 0 and bigger.changed == 1, bigger
    assert '+  <memory unit="KiB">327680</memory>' in bigger.stdout, bigger
    assert host.check_output(V + "domuuid " + name) == uid
    assert_kept(host, summary, before)

    gone = guest(dict(spec, state="absent"))
    assert gone.rc == 0 and gone.changed == 1, gone
    assert host.run(V + "dominfo " + name).rc != 0
    assert_kept(host, summary, before)  # state: absent keeps disk, NVRAM and TPM state

    # Defined again, it gets the same uuid, so libvirt finds its TPM state again.
    back = guest(dict(spec, state="shutdown"))
    assert back.rc == 0 and back.changed == 1, back
    assert host.check_output(V + "domuuid " + name) == uid
    assert_kept(host, summary, before)

    purged = guest(dict(spec, state="absent", purge=True))
    assert purged.rc == 0 and purged.changed == 1, purged
    for path in before:
        assert not host.file(path).exists, path + " survived purge"


def test_site_redefinition_and_absent_keep_win11_data(host, site, summary):
    """The seed's win11 (external TPM): a redefinition and state: absent leave its data alone."""
    files = ("/mnt/vm/win11.qcow2", "/mnt/vm/win11_SECURE_VARS.fd", "/mnt/vm/tpm/tpm2-00.permall")
    host.run_test(V + "destroy win11")
    before = sums(host, *files)
    uid = host.check_output(V + "domuuid win11")
    try:
        # Extra vars replace kvmlab_guest_overrides whole: keep the inventory's for the other guests.
        win11 = dict(DEMO_OVERRIDES["win11"], memory="3G", state="shutdown")
        more = {"kvmlab_guest_overrides": dict(DEMO_OVERRIDES, win11=win11)}
        run = site("-e", json.dumps(more))
        assert run.rc == 0 and run.changed == 1, run
        assert "3145728" in host.check_output(V + "dumpxml --inactive win11")
        assert_kept(host, summary, before)

        more["kvmlab_guest_overrides"]["win11"]["state"] = "absent"
        run = site("-e", json.dumps(more))
        assert run.rc == 0 and run.changed == 1, run
        assert host.run(V + "dominfo win11").rc != 0
        assert_kept(host, summary, before)
    finally:
        restored = site()
    assert restored.rc == 0 and restored.changed > 0, restored
    assert host.check_output(V + "domstate win11") == "running"
    assert host.check_output(V + "domuuid win11") == uid
    assert site().changed == 0


def test_firmware_change_needs_reset_nvram_and_backs_up(host, guest, name):
    spec = dict(TCG, name=name)
    nvram = "/var/lib/libvirt/qemu/nvram/%s_VARS.fd" % name
    assert guest(spec).rc == 0
    wait_for(host, "test -s " + nvram)
    host.run_test(V + "destroy " + name)
    old = sums(host, nvram)[nvram]
    definition = host.check_output(V + "dumpxml --inactive " + name)

    refused = guest(dict(spec, secure_boot=True, state="shutdown"))
    assert refused.rc != 0, refused
    out = refused.stdout + refused.stderr
    assert "changing its firmware from uefi to uefi+secure-boot+enrolled-keys needs a new NVRAM" in out, refused
    assert "Set reset_nvram: true" in out, refused
    assert host.check_output(V + "dumpxml --inactive " + name) == definition
    assert sums(host, nvram)[nvram] == old

    reset = guest(dict(spec, secure_boot=True, state="shutdown", reset_nvram=True))
    assert reset.rc == 0 and reset.changed == 1, reset
    backups = host.check_output("ls %s.*.bak" % nvram).split()
    assert len(backups) == 1
    assert sums(host, backups[0])[backups[0]] == old
    defined = ET.fromstring(host.check_output(V + "dumpxml --inactive " + name))
    assert defined.find("os/firmware/feature[@name='secure-boot']").get("enabled") == "yes"
    started = guest(dict(spec, secure_boot=True))
    assert started.rc == 0, started
    wait_for(host, "test -s " + nvram)  # a new one, from the Secure Boot template
    assert ET.fromstring(host.check_output(V + "dumpxml " + name)).find("os/loader").get("secure") == "yes"
    host.run("rm -f %s.*.bak" % nvram)


def test_shutdown_is_graceful_and_forced_only_when_asked(host, guest, name):
    spec = dict(KVM_BIOS, name=name)
    assert guest(spec).rc == 0
    assert host.check_output(V + "domstate " + name) == "running"

    # SeaBIOS without an OS ignores the ACPI power button.
    held = guest(dict(spec, state="shutdown", shutdown_timeout=3))
    assert held.rc != 0, held
    out = held.stdout + held.stderr
    assert "did not shut down within 3 s" in out and "force_stop: true" in out, held
    assert host.check_output(V + "domstate " + name) == "running"

    forced = guest(dict(spec, state="shutdown", shutdown_timeout=3, force_stop=True))
    assert forced.rc == 0 and forced.changed == 1, forced
    assert host.check_output(V + "domstate " + name) == "shut off"
    assert guest(dict(spec, state="shutdown")).changed == 0


def test_missing_iso_is_an_empty_drive_until_it_appears(host, guest, name):
    iso = "/mnt/vm/iso/%s.iso" % name
    spec = dict(KVM_BIOS, name=name, cdroms=[iso], state="shutdown")
    try:
        run = guest(spec)
        assert run.rc == 0 and run.changed == 1, run
        assert "ISO %s is missing, so cdrom sda is attached empty" % iso in run.stderr + run.stdout, run
        assert iso not in host.check_output(V + "dumpxml --inactive " + name)
        assert guest(spec).changed == 0

        host.run_test("truncate -s 1M " + iso)
        inserted = guest(spec)
        assert inserted.rc == 0 and inserted.changed == 1, inserted
        assert iso in host.check_output(V + "domblklist " + name)
        assert guest(spec).changed == 0
    finally:
        host.run("rm -f " + iso)


def test_check_mode_predicts_a_new_guest_and_changes_nothing(host, guest, name):
    spec = dict(KVM_BIOS, name=name, disks=[{"name": name + ".qcow2", "size": "64M"}])
    check = guest(spec, "--check", "--diff")
    assert check.rc == 0 and check.changed == 2, check  # the disk and the domain
    assert "<name>%s</name>" % name in check.stdout, check
    assert host.run(V + "dominfo " + name).rc != 0
    assert not host.file("/mnt/vm/%s.qcow2" % name).exists


def test_hugepages_guest_starts_only_with_enough_free_pages(host, guest, name):
    free = int(host.file("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").content_string)
    # More 2 MiB pages than the host has free: the start is refused, naming the numbers.
    memory_mib = max(256, (free + 64) * 2)
    run = guest(dict(KVM_BIOS, name=name, memory="%dM" % memory_mib, hugepages=True))
    assert run.rc != 0, run
    out = run.stdout + run.stderr
    assert "guest %s cannot start: hugepages: %s %d need %d pages of 2048 KiB, but the host has %d free" % (
        name, name, memory_mib // 2, memory_mib // 2, free) in out, run
    assert run.changed == 0, run
    assert host.run(V + "dominfo " + name).rc != 0, "refused before the definition"
    # Defined without starting, it is accepted and backed by 2 MiB pages.
    shut = guest(dict(KVM_BIOS, name=name, memory="%dM" % memory_mib, hugepages=True, state="shutdown"))
    assert shut.rc == 0, shut
    dom = ET.fromstring(host.check_output(V + "dumpxml --inactive " + name))
    assert dom.find("memoryBacking/hugepages/page").get("size") == "2048"
