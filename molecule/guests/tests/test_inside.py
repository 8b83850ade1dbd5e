"""What each guest gets, seen from inside it (its agent), against what libvirt says it has."""

from __future__ import annotations

import json
import re

from guest_agent import V, q

EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
EFI_DB = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
SHIM_GUID = "605dab50-e046-4300-abb6-3dd810dd8b23"
MS_UEFI_CA = "Microsoft Corporation UEFI CA 2011"


def efi_var(guests, name: str, var: str) -> bytes:
    """An EFI variable's data as the guest reads it (efivarfs: 4 attribute bytes, then the data)."""
    hexed = guests.sh(name, "od -An -v -tx1 /sys/firmware/efi/efivars/%s" % var).split()
    return bytes(int(b, 16) for b in hexed)[4:]


def secure_boot_on(guests, name: str) -> None:
    assert efi_var(guests, name, "SecureBoot-" + EFI_GLOBAL) == b"\x01", name
    assert "Secure boot enabled" in guests.sh(name, "dmesg"), name
    # The kernel locks itself down under Secure Boot.
    assert "[integrity]" in guests.sh(name, "cat /sys/kernel/security/lockdown"), name


def test_win11_boots_shim_signed_by_microsoft_with_secure_boot_enforced(guests):
    secure_boot_on(guests, "win11")
    # The firmware's db holds Microsoft's UEFI CA: the enrolled keys the spec asked for.
    assert MS_UEFI_CA.encode() in efi_var(guests, "win11", "db-" + EFI_DB)
    # shim ran (it leaves its variables under its own vendor GUID), and the loader the firmware
    # verified is shim signed by that CA.
    assert SHIM_GUID in guests.sh("win11", "ls /sys/firmware/efi/efivars/")
    loader = guests.sh("win11", "grep -c -a %s /boot/efi/EFI/BOOT/BOOTX64.EFI" % q(MS_UEFI_CA))
    assert int(loader) >= 1


def test_win11_has_a_tpm2_that_the_firmware_measured_into(guests):
    assert guests.sh("win11", "cat /sys/class/tpm/tpm0/tpm_version_major").strip() == "2"
    pcr0 = guests.sh("win11", "tpm2_pcrread sha256:0")
    value = re.search(r"0\s*:\s*0x([0-9A-Fa-f]{64})", pcr0)
    assert value, pcr0
    assert set(value.group(1)) != {"0"}, pcr0
    # libvirt's side agrees: the guest's TPM is the external swtpm of its spec.
    assert guests.xml("win11").find("devices/tpm/backend").get("type") == "external"


def test_vcpus_and_topology_as_libvirt_defines_them(guests):
    for name in ("win11", "arch", "kali"):
        xml = guests.xml(name)
        topology = xml.find("cpu/topology")
        lscpu = {row["field"].rstrip(":"): row["data"] for row in
                 json.loads(guests.sh(name, "lscpu -J"))["lscpu"]}
        assert int(lscpu["CPU(s)"]) == int(xml.findtext("vcpu")), name
        assert int(lscpu["Thread(s) per core"]) == int(topology.get("threads")), (name, lscpu)
        assert int(lscpu["Core(s) per socket"]) == int(topology.get("cores")), (name, lscpu)
        assert int(lscpu["Socket(s)"]) == int(topology.get("sockets")), (name, lscpu)


def nic_of(guests, name: str) -> tuple[str, str]:
    """The guest's interface name with the MAC libvirt gave it, and that MAC."""
    mac = guests.xml(name).find("devices/interface/mac").get("address").lower()
    ifname = guests.sh(name, "grep -l -x %s /sys/class/net/*/address" % q(mac)).split("/")[4]
    return ifname, mac


def test_disk_and_nic_are_virtio(guests, host):
    for name in ("win11", "arch", "kali"):
        disk = guests.xml(name).find("devices/disk[@device='disk']/target")
        assert disk.get("bus") == "virtio"
        dev = disk.get("dev")
        info = host.check_output(V + "domblkinfo %s %s" % (name, dev))
        capacity = int(re.search(r"Capacity:\s+(\d+)", info).group(1))
        assert int(guests.sh(name, "cat /sys/block/%s/size" % dev)) * 512 == capacity, name
        assert guests.sh(name, "basename $(readlink /sys/block/%s/device/driver)" % dev).strip() == "virtio_blk"
        ifname, _mac = nic_of(guests, name)
        assert guests.sh(name, "basename $(readlink /sys/class/net/%s/device/driver)" % ifname).strip() == \
            "virtio_net", name


def test_win11_has_its_reserved_address(guests, host):
    ifname, mac = nic_of(guests, "win11")
    network = host.check_output(V + "net-dumpxml default")
    assert "mac='%s'" % mac in network and "ip='192.168.122.136'" in network
    assert "inet 192.168.122.136/24" in guests.sh("win11", "ip -4 -o addr show dev " + ifname)


def test_win11_virtiofs_share_both_ways(guests, host):
    share = guests.xml("win11").find("devices/filesystem")
    source, tag = share.find("source").get("dir"), share.find("target").get("dir")
    assert tag == "share"
    mount = guests.sh("win11", "findmnt -n -o FSTYPE,SOURCE /mnt/share").split()
    assert mount == ["virtiofs", tag]
    # Written in the guest, owned by a user of the guest's: on the host, as that uid and gid.
    guests.sh("win11", "echo from-guest > /mnt/share/from-guest.txt && chown 4242:4343 /mnt/share/from-guest.txt")
    assert host.file(source + "/from-guest.txt").content_string == "from-guest\n"
    assert (host.file(source + "/from-guest.txt").uid, host.file(source + "/from-guest.txt").gid) == (4242, 4343)
    host.run_test("echo from-host > %s", source + "/from-host.txt")
    assert guests.sh("win11", "cat /mnt/share/from-host.txt") == "from-host\n"
    host.run_test("rm -f %s %s", source + "/from-guest.txt", source + "/from-host.txt")


# Hyper-V CPUID, leaf 0x40000003 EAX (features) and 0x40000004 (recommendations), as QEMU sets
# them for each <hyperv> enlightenment of the domain XML under KVM.
HYPERV_FEATURE_BITS = {"runtime": 0, "vapic": 4, "vpindex": 6, "reset": 7, "frequencies": 11, "synic": 2,
                       "stimer": 3}
CPUID = r"""
import struct, subprocess
subprocess.run(["modprobe", "cpuid"], check=False)
def leaf(n):
    with open("/dev/cpu/0/cpuid", "rb") as f:
        f.seek(n)
        return struct.unpack("<4I", f.read(16))
a, b, c, d = leaf(0x40000000)
print(struct.pack("<3I", b, c, d).decode("latin-1"))
print(a)
print(leaf(0x40000003)[0] if a >= 0x40000004 else -1)
print(*(leaf(0x40000004)[:2] if a >= 0x40000004 else (-1, -1)))
"""


def test_win11_sees_the_hyperv_enlightenments_its_virt_type_offers(guests):
    """Under KVM, QEMU presents the enlightenments as Hyper-V's CPUID leaves. Under TCG (the UEFI
    guests here) QEMU 7.2 accepts them but presents its own signature and no Hyper-V leaf: the
    guest sees none (measured; a Windows guest would run without them)."""
    xml = guests.xml("win11")
    hyperv = xml.find("features/hyperv")
    enabled = {e.tag for e in hyperv if e.get("state") == "on"}
    assert {"relaxed", "vapic", "spinlocks"} <= enabled
    signature, top, features, recommended = guests.exec("win11", ["python3", "-c", CPUID])["out"].splitlines()
    if xml.get("type") == "qemu":
        assert signature == "TCGTCGTCGTCG" and int(top) < 0x40000003, (signature, hex(int(top)))
        return
    assert signature == "Microsoft Hv", signature
    features = int(features)
    for name, bit in HYPERV_FEATURE_BITS.items():
        assert bool(features & (1 << bit)) == (name in enabled), (name, hex(features), sorted(enabled))
    eax, retries = (int(v) for v in recommended.split())
    assert eax & (1 << 5), "relaxed timing not recommended: %#x" % eax
    assert retries == int(hyperv.find("spinlocks").get("retries"))


def test_arch_has_secure_boot_and_no_tpm(guests):
    secure_boot_on(guests, "arch")
    assert guests.xml("arch").find("devices/tpm") is None
    assert guests.sh("arch", "ls /sys/class/tpm 2>/dev/null | wc -l").strip() == "0"


def test_kali_boots_by_bios_under_the_virt_type_libvirt_gave_it(guests):
    """kali boots by BIOS. Under KVM on a real host; here under TCG, like the UEFI guests: a BIOS
    guest that boots an OS stops under KVM on these nested-PVM machines (docs/TESTING.md). What
    the guest detects must be what libvirt runs it with, for each guest."""
    xml = guests.xml("kali")
    assert xml.find("os/loader") is None and xml.find("os/nvram") is None
    assert guests.sh("kali", "test -d /sys/firmware/efi && echo uefi || echo bios").strip() == "bios"
    assert guests.sh("win11", "test -d /sys/firmware/efi && echo uefi || echo bios").strip() == "uefi"
    for name in ("win11", "arch", "kali"):
        detected = guests.sh(name, "systemd-detect-virt", ok=False).strip()
        assert detected == guests.xml(name).get("type"), (name, detected)
