"""Secure Boot is enforced, not only reported: a guest whose boot loader is replaced by an unsigned
one does not boot, and its firmware says why on the console; with the signed loader back, it boots.

The guest's own disk is the only copy of its loader, so the signed one is put back by booting the
same disk through SeaBIOS (the guest OS image boots both ways), through the module's own firmware
change (reset_nvram)."""

from __future__ import annotations

import time

from guest_agent import V

NAME = "sbcheck"
SOURCE = "/var/cache/kvmlab-guest-os/kvmlab-guest.qcow2"
UEFI = {"name": NAME, "memory": "1G", "vcpus": 1, "firmware": "uefi", "secure_boot": True, "enrolled_keys": True,
        "virt_type": "qemu", "cpu_mode": "maximum", "graphics": "none", "video": "none",
        "interfaces": [{"network": "default"}]}
# Under TCG too: a BIOS guest that boots an OS stops under KVM on these machines (docs/TESTING.md).
BIOS = dict(UEFI, firmware="bios", secure_boot=False, enrolled_keys=False)
# The guest OS mounts its ESP at /boot/efi (on first access).
ESP = "cd /boot/efi/EFI/BOOT && "


def test_unsigned_loader_refused_then_signed_boots_again(guests, guest, host):
    checksum = host.check_output("sha256sum %s | cut -d' ' -f1", SOURCE)
    disk = {"name": NAME + ".qcow2", "pool": "vm", "size": "3G",
            "source": {"path": SOURCE, "checksum": "sha256:" + checksum}}
    try:
        run = guest(dict(UEFI, disks=[disk]))
        assert run.rc == 0, run
        guests.wait([NAME])
        assert guests.sh(NAME, "od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-*").split()[-1] == "1"

        # The unsigned build of the same shim in place of the signed one.
        swap = "cp BOOTX64.EFI ../../signed-shim.efi && cp /usr/lib/shim/shimx64.efi BOOTX64.EFI && sync"
        guests.sh(NAME, ESP + swap)
        host.run_test(V + "shutdown --mode acpi " + NAME)
        guests.wait_state(NAME, "shut off", 120)
        seen = len(guests.console(NAME))
        host.run_test(V + "start " + NAME)
        deadline = time.monotonic() + 120
        while "Access Denied" not in guests.console(NAME)[seen:]:
            assert time.monotonic() < deadline, "no refusal on the console" + guests.console_tail(NAME)
            time.sleep(2)
        refused = guests.console(NAME)[seen:]
        assert "BOOTX64.EFI" in refused.upper() or "Boot0" in refused, refused[-2000:]
        assert host.run("%s %s 20 ping", "/usr/local/bin/kvmlab-guest-agent", NAME).rc != 0, "it booted anyway"
        host.run_test(V + "destroy " + NAME)

        # Through BIOS, the same disk boots; the signed loader goes back.
        run = guest(dict(BIOS, disks=[disk], reset_nvram=True))
        assert run.rc == 0, run
        guests.wait([NAME], 180)
        guests.sh(NAME, ESP + "cp ../../signed-shim.efi BOOTX64.EFI && rm ../../signed-shim.efi && sync")
        host.run_test(V + "shutdown --mode acpi " + NAME)
        guests.wait_state(NAME, "shut off", 120)

        # UEFI with Secure Boot again (a fresh variable store): it boots.
        run = guest(dict(UEFI, disks=[disk], reset_nvram=True))
        assert run.rc == 0, run
        guests.wait([NAME])
        assert guests.sh(NAME, "od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-*").split()[-1] == "1"
    finally:
        host.run(V + "destroy " + NAME + "; " + V + "undefine " + NAME + " --nvram --remove-all-storage")
        host.run("rm -f /mnt/vm/%s* /var/lib/libvirt/qemu/nvram/%s*" % (NAME, NAME))
