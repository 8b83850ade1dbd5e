"""Bad input stops the site before any change, with a message that names the field (and, for a
collision, both owners), and leaves libvirt, the unit files and the file modes exactly as they were.

The cases cover every class the checks know: hostile strings (control characters, names, types),
collisions between guests and with guests libvirt has, networks, paths that are not owned, the
console's exposure and CPU pins. Each snapshot is the full state, not one property.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

DEMO_VARS = Path(__file__).resolve().parents[3] / "examples/workstation/inventories/demo/group_vars/hypervisors.yml"
DEMO = yaml.safe_load(DEMO_VARS.read_text())
DEMO_OVERRIDES = DEMO["kvmlab_guest_overrides"]
V = "virsh -c qemu:///system "

# Everything a bad run could touch: every guest's and network's definition, the pools, the unit
# files, and the owners, modes and sizes of the storage tree and of the system directories a
# share or a TPM path could point at.
SNAPSHOT = (
    "for g in $(" + V + "list --all --name | sort); do " + V + "dumpxml --inactive $g; " + V + "dominfo $g "
    "| grep -E '^(State|Autostart)'; done; " + V + "net-dumpxml --inactive default; " + V + "pool-list --all; "
    "sha256sum /etc/systemd/system/kvmlab-* 2>&1; "
    "find /mnt/vm -xdev -printf '%p %m %u:%g %s\\n' | sort; "
    "stat -c '%n %a %U:%G' / /etc /var /var/lib/libvirt /mnt /root /etc/shadow"
)
GHOST_DISK = "/mnt/vm/ghost.qcow2"
GHOST_MAC = "52:54:00:99:88:77"


def override(guest: str, **fields) -> dict:
    """The demo inventory's kvmlab_guest_overrides with `fields` changed for `guest`."""
    return {"kvmlab_guest_overrides": dict(DEMO_OVERRIDES, **{guest: dict(DEMO_OVERRIDES.get(guest, {}), **fields)})}


NET = {"name": "default", "bridge": "virbr0", "forward": "nat", "address": "192.168.122.1", "prefix": 24,
       "dhcp": {"start": "192.168.122.2", "end": "192.168.122.254"}}
OTHER_NET = {"name": "lab", "bridge": "virbr9", "forward": "nat", "address": "192.168.130.1", "prefix": 24}
POOLS = [{"name": "vm", "path": "/mnt/vm"}, {"name": "iso", "path": "/mnt/vm/iso"},
         {"name": "default", "path": "/var/lib/libvirt/images"}]
A = "52:54:00:00:00:0a"
B = "52:54:00:00:00:0b"
WIN11_MAC = "52:54:00:ab:93:44"
KALI_TPM = {"tpm": "external", "tpm_model": "tis", "tpm_socket": "/mnt/vm/kali-swtpm.sock",
            "tpm_state_dir": "/mnt/vm/tpm-kali"}

CASES = {
    # -- variables renamed in 0.1.0: never silently dropped (plugins/plugin_utils/renames.py)
    "an old storage name": (
        {"storage_pools": POOLS},
        "storage_pools was renamed to kvmlab_storage_pools; rename it where it is set"),
    "an old network name": (
        {"network_networks": [NET]}, "network_networks was renamed to kvmlab_networks"),
    "an old guest list": (
        {"site_vm_roles": ["vm_kali"]}, "site_vm_roles was renamed to kvmlab_vm_roles"),
    "a VM role of the collection": (
        {"kvmlab_vm_roles": ["kvmlab.hypervisor.vm_kali"]},
        "kvmlab_vm_roles: kvmlab.hypervisor.vm_kali is no longer part of the collection (VM roles belong to your "
        "project); copy the role into your project's roles/ directory"),
    # -- storage and network specs
    "ip outside the subnet": (
        {"kvmlab_networks": [dict(NET, hosts=[{"name": "win11", "mac": A, "ip": "192.168.123.5"}])]},
        "kvmlab_networks[default].hosts[win11].ip: 192.168.123.5 is outside 192.168.122.0/24"),
    "duplicate ip": (
        {"kvmlab_networks": [dict(NET, hosts=[{"name": "a", "mac": A, "ip": "192.168.122.50"},
                                              {"name": "b", "mac": B, "ip": "192.168.122.50"}])]},
        "kvmlab_networks[default].hosts[b].ip: 192.168.122.50 is already reserved for"),
    "duplicate reserved mac": (
        {"kvmlab_networks": [dict(NET, hosts=[{"name": "a", "mac": A, "ip": "192.168.122.50"},
                                              {"name": "b", "mac": A, "ip": "192.168.122.51"}])]},
        "kvmlab_networks[default].hosts[b].mac: 52:54:00:00:00:0a is already reserved for"),
    "bridge name over 15 characters": (
        {"kvmlab_networks": [dict(NET, bridge="kvmlab-bridge-01")]},
        "kvmlab_networks[default].bridge: 'kvmlab-bridge-01' is 16 characters; Linux allows at most 15"),
    "dhcp range outside the subnet": (
        {"kvmlab_networks": [dict(NET, dhcp={"start": "192.168.122.2", "end": "192.168.123.254"})]},
        "kvmlab_networks[default].dhcp.end: 192.168.123.254 is outside 192.168.122.0/24"),
    "network defined twice": (
        {"kvmlab_networks": [NET, dict(OTHER_NET, name="default")]},
        "kvmlab_networks[default].name: network 'default' is defined twice"),
    "bridge of two networks": (
        {"kvmlab_networks": [NET, dict(OTHER_NET, bridge="virbr0")]},
        "kvmlab_networks[lab].bridge: virbr0 is already the bridge of network 'default'"),
    "overlapping subnets": (
        {"kvmlab_networks": [NET, dict(OTHER_NET, address="192.168.122.129", prefix=25)]},
        "kvmlab_networks[lab]: 192.168.122.128/25 overlaps 192.168.122.0/24 of network 'default'"),
    "newline in a bridge name": (
        {"kvmlab_networks": [dict(NET, bridge="virbr0\nx")]},
        "kvmlab_networks[0].bridge: 'virbr0\\nx' holds the control character '\\n'"),
    "reservations that are not a list": (
        {"kvmlab_networks": [dict(NET, hosts="win11")]},
        "kvmlab_networks[default].hosts: must be a list of mappings, got 'win11'"),
    "relative pool path": (
        {"kvmlab_storage_pools": [*POOLS[:2], {"name": "default", "path": "var/lib/libvirt/images"}]},
        "kvmlab_storage_pools[default].path: 'var/lib/libvirt/images' is relative"),
    # The btrfs subvolume's fields, which its fstab line and mount options hold.
    "mount option with a comma": (
        {"kvmlab_storage_mount_options": ["noatime,ro"]},
        "kvmlab_storage_mount_options: 'noatime,ro' is not one mount option"),
    "mount option naming another subvolume": (
        {"kvmlab_storage_mount_options": ["subvol=@"]},
        "kvmlab_storage_mount_options: 'subvol=@' would mount another subvolume"),
    "subvolume name with a slash": (
        {"kvmlab_storage_subvolume": "@vm/x"}, "kvmlab_storage_subvolume: '@vm/x' must be one subvolume name"),
    "newline in the mount point": (
        {"kvmlab_storage_mount_point": "/mnt/vm\nx"}, "kvmlab_storage_mount_point: '/mnt/vm\\nx' holds a control"),
    "pool path collision": (
        {"kvmlab_storage_pools": [*POOLS, {"name": "more", "path": "/mnt/vm/iso/"}]},
        "kvmlab_storage_pools[more].path: /mnt/vm/iso is already the path of pool 'iso'"),
    # -- one guest's spec: strings, names, types
    "guest memory not a size": (
        override("kali", memory="lots"), "kvmlab_guests[kali].memory: not a size: 'lots'"),
    "guest memory a list": (
        override("kali", memory=["2G"]), "kvmlab_guests[kali].memory: must be a string or a whole number, got ['2G']"),
    "disks a string": (
        override("kali", disks="kali.qcow2"), "kvmlab_guests[kali].disks: must be a list, got 'kali.qcow2'"),
    "interface a string": (
        override("kali", interfaces=["default"]), "kvmlab_guests[kali].interfaces[0]: must be a mapping, got "
                                                  "'default'"),
    "pins a list": (
        override("kali", cpu_pins=["1"]), "kvmlab_guests[kali].cpu_pins: must be a mapping, got ['1']"),
    "overrides of a guest a string": (
        {"kvmlab_guest_overrides": dict(DEMO_OVERRIDES, kali="big")}, "kvmlab_guest_overrides.kali: must be a "
                                                                      "mapping of fields"),
    "guest name ending in a newline": (
        {"kvmlab_vm_roles": ["vm_kali"], "kvmlab_guest_overrides": {"kali": dict(
            DEMO_OVERRIDES["kali"], name="kali\n")}},
        "kvmlab_guests['kali\\n'].name: 'kali\\n' holds the control character '\\n'"),
    "newline in the TPM state directory": (
        override("kali", **{**KALI_TPM, "tpm_state_dir": "/mnt/vm/tpm-kali\nExecStartPre=+/bin/touch /x"}),
        "kvmlab_guests[kali].tpm_state_dir: '/mnt/vm/tpm-kali\\nExecStartPre=+/bin/touch /x' holds the control "
        "character '\\n'"),
    "comma in the TPM state directory": (
        override("kali", **{**KALI_TPM, "tpm_state_dir": "/mnt/vm/tpm,kali"}),
        "kvmlab_guests[kali].tpm_state_dir: '/mnt/vm/tpm,kali' holds ','"),
    "tab in a cdrom path": (
        override("kali", cdroms=["/mnt/vm/iso/kali\t.iso"]),
        "kvmlab_guests[kali].cdroms[0]: '/mnt/vm/iso/kali\\t.iso' holds the control character '\\t'"),
    "machine type with a quote": (
        override("kali", machine="q35' foo='bar"), "kvmlab_guests[kali].machine: \"q35' foo='bar\" is not a "
                                                   "machine type"),
    "misspelt guest field": (
        override("win11", cpu_pin={0: "1"}), "kvmlab_guests[win11].cpu_pin: unknown field"),
    "secure boot without q35": (
        override("arch", machine="pc"), "kvmlab_guests[arch].machine: Secure Boot needs the q35 machine (for SMM)"),
    "nvram on a BIOS guest": (
        override("kali", nvram="/mnt/vm/kali_VARS.fd"),
        "kvmlab_guests[kali].nvram: needs firmware uefi; this guest has firmware bios"),
    "multicast MAC": (
        override("kali", interfaces=[{"network": "default", "boot_rom": False, "mac": "53:54:00:00:00:01"}]),
        "kvmlab_guests[kali].interfaces[0].mac: 53:54:00:00:00:01 is a multicast address"),
    # -- paths
    "relative nvram": (
        override("arch", nvram="arch_VARS.fd"), "kvmlab_guests[arch].nvram: 'arch_VARS.fd' is not an absolute path"),
    "nvram that is not normalised": (
        override("arch", nvram="/mnt/vm/../../etc/shadow"),
        "kvmlab_guests[arch].nvram: '/mnt/vm/../../etc/shadow' is not normalised; write it as /etc/shadow"),
    "nvram outside the guest data": (
        override("arch", nvram="/etc/shadow"),
        "kvmlab_guests[arch].nvram: /etc/shadow lies outside the storage mount, the pools and libvirt's directories"),
    "TPM state outside the guest data": (
        override("kali", **{**KALI_TPM, "tpm_state_dir": "/root/tpm"}),
        "kvmlab_guests[kali].tpm_state_dir: /root/tpm lies outside the storage mount"),
    "TPM state in the storage mount itself": (
        override("kali", **{**KALI_TPM, "tpm_state_dir": "/mnt/vm"}),
        "kvmlab_guests[kali].tpm_state_dir: /mnt/vm is or holds /mnt/vm, which swtpm's unit would hand to tss"),
    "TPM socket path too long": (
        override("kali", **{**KALI_TPM, "tpm_socket": "/mnt/vm/" + "s" * 100}),
        "kvmlab_guests[kali].tpm_socket: '/mnt/vm/sss"),
    "relative cdrom": (
        override("kali", cdroms=["kali.iso"]), "kvmlab_guests[kali].cdroms[0]: 'kali.iso' is not an absolute path"),
    "relative backing file": (
        override("kali", disks=[{"name": "kali2.qcow2", "size": "1G", "backing_file": "base.qcow2"}]),
        "kvmlab_guests[kali].disks[0].backing_file: 'base.qcow2' is not an absolute path"),
    "share of /": (
        override("win11", filesystems=[{"source": "/", "target": "share"}]),
        "kvmlab_guests[win11].filesystems[0].source: / holds or lies in the system directory"),
    "share of /etc": (
        override("win11", filesystems=[{"source": "/etc", "target": "share"}]),
        "kvmlab_guests[win11].filesystems[0].source: /etc is the system directory /etc"),
    "share inside libvirt's directory": (
        override("win11", filesystems=[{"source": "/var/lib/libvirt/qemu", "target": "share"}]),
        "kvmlab_guests[win11].filesystems[0].source: /var/lib/libvirt/qemu holds or lies in the system directory"),
    "share that holds guest disks": (
        override("win11", filesystems=[{"source": "/mnt/vm", "target": "share"}]),
        "kvmlab_guests[win11].filesystems[0].source: /mnt/vm holds /mnt/vm/"),
    "mount tag over 36 bytes": (
        override("win11", filesystems=[{"source": "/mnt/vm/share", "target": "t" * 37}]),
        "kvmlab_guests[win11].filesystems[0].target: 'ttt"),
    # -- collisions between guests
    "disk of two guests": (
        override("arch", disks=[{"name": "win11.qcow2", "pool": "vm", "size": "40G"}]),
        "kvmlab_guests[arch].disks[0]: /mnt/vm/win11.qcow2 is already the disk of guest win11"),
    "nvram of two guests": (
        override("arch", nvram="/mnt/vm/win11_SECURE_VARS.fd"),
        "kvmlab_guests[arch].nvram: /mnt/vm/win11_SECURE_VARS.fd is already the NVRAM file of guest win11"),
    "TPM socket of two guests": (
        override("kali", **{**KALI_TPM, "tpm_socket": "/mnt/vm/swtpm-sock"}),
        "kvmlab_guests[kali].tpm_socket: /mnt/vm/swtpm-sock is already the TPM socket of guest win11"),
    "TPM state of two guests": (
        override("kali", **{**KALI_TPM, "tpm_state_dir": "/mnt/vm/tpm"}),
        "kvmlab_guests[kali].tpm_state_dir: /mnt/vm/tpm is already the TPM state directory of guest win11"),
    "MAC of two guests": (
        override("kali", interfaces=[{"network": "default", "boot_rom": False, "mac": WIN11_MAC}]),
        "kvmlab_guests[kali].interfaces[0].mac: 52:54:00:ab:93:44 is already the MAC of guest win11"),
    "MAC reserved for another name": (
        dict(override("kali", interfaces=[{"network": "default", "boot_rom": False, "mac": A}]),
             kvmlab_networks=[dict(NET, hosts=[{"name": "printer", "mac": A, "ip": "192.168.122.50"}])]),
        "kvmlab_guests[kali].interfaces[0].mac: 52:54:00:00:00:0a is reserved for printer in "
        "kvmlab_networks[default].hosts"),
    "cdrom that is another guest's disk": (
        override("kali", cdroms=["/mnt/vm/win11.qcow2"]),
        "kvmlab_guests[kali].cdroms[0]: /mnt/vm/win11.qcow2 is the disk of guest win11"),
    "pins that collide between guests": (
        override("kali", cpu_pins={"0": "1"}, emulator_pins="0"),
        "kvmlab_guests[win11].cpu_pinning: guest win11: 1 vCPUs to pin, but only 0 CPUs are free"),
    "more vCPUs pinned than the host has free": (
        override("win11", vcpus=4, cpu_threads=2), "kvmlab_guests[win11].cpu_pinning: guest win11: 4 vCPUs to pin"),
    "pin beyond the guest's vCPUs": (
        override("kali", cpu_pins={"5": "1"}), "kvmlab_guests[kali].cpu_pins: '5': '1' is not a vCPU (0-1)"),
    "disk of a guest libvirt has but the inventory does not": (
        override("kali", disks=[{"name": "ghost.qcow2", "pool": "vm", "size": "1G"}]),
        "kvmlab_guests[kali].disks[0]: /mnt/vm/ghost.qcow2 is already the file of guest ghost (defined in libvirt, "
        "not in the inventory)"),
    "MAC of a guest libvirt has but the inventory does not": (
        override("kali", interfaces=[{"network": "default", "boot_rom": False, "mac": GHOST_MAC}]),
        "kvmlab_guests[kali].interfaces[0].mac: 52:54:00:99:88:77 is already the MAC of guest ghost (defined in "
        "libvirt, not in the inventory)"),
    # -- the console
    "console on every address without opting in": (
        override("arch", graphics_listen="0.0.0.0"),
        "kvmlab_guests[arch].graphics_listen: 0.0.0.0 puts the spice console on the network, with no password; "
        "keep 127.0.0.1"),
    "console address that is a name": (
        override("arch", graphics_listen="localhost"), "kvmlab_guests[arch].graphics_listen: 'localhost' is not an IP"),
}

GHOST_XML = """<domain type='qemu'>
  <name>ghost</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><source file='%s'/><target dev='vda' bus='virtio'/></disk>
    <interface type='network'><mac address='%s'/><source network='default'/></interface>
  </devices>
</domain>""" % (GHOST_DISK, GHOST_MAC)


@pytest.fixture(scope="module")
def ghost(host):
    """A guest that libvirt has and the inventory does not list (defined by hand, never started)."""
    host.run_test("cat > /tmp/ghost.xml <<'EOF'\n%s\nEOF\n" % GHOST_XML + V + "define /tmp/ghost.xml")
    yield "ghost"
    host.run_test(V + "undefine ghost")


@pytest.mark.parametrize("case", CASES)
def test_bad_input_fails_before_any_change(host, site, ghost, summary, case):
    extra_vars, message = CASES[case]
    before = host.check_output(SNAPSHOT)
    run = site("-e", json.dumps(extra_vars))
    assert run.rc != 0, run
    assert message in run.stdout + run.stderr, run
    assert "Traceback" not in run.stdout + run.stderr, run
    assert run.changed == 0, run
    # It stopped in the checks that come first: no task ran on the host.
    assert "kvmlab.hypervisor.host : Read the host" not in run.stdout, run
    assert host.check_output(SNAPSHOT) == before
    summary["bad inputs refused"] += 1


def test_every_class_has_cases():
    """At least 30 cases, and every class of the checks is in the table."""
    assert len(CASES) >= 30
    messages = " ".join(m for _extra, m in CASES.values())
    for needle in ("control character", "must be", "unknown field", "not an absolute path", "not normalised",
                   "lies outside", "system directory", "already the disk", "already the NVRAM", "TPM socket",
                   "TPM state directory", "already the MAC", "reserved for", "overlaps", "defined twice",
                   "vCPUs to pin", "defined in libvirt", "graphics_listen"):
        assert needle in messages, needle


def test_preflight_rejects_missing_admin_user(site):
    run = site("-e", '{"kvmlab_host_libvirt_admins": ["kvmlab", "nosuchuser"]}')
    assert run.rc != 0, run
    # ansible-core prints the unfolded error message on stderr.
    assert "kvmlab_host_libvirt_admins: nosuchuser do not exist" in run.stdout + run.stderr, run
    assert run.changed == 0, run


@pytest.mark.parametrize("uri", ['qemu:///system"\nuri_default = "test:///default', "qemu:///system extra",
                                 "no-scheme"])
def test_preflight_rejects_a_default_uri_that_could_change_the_client_config(host, site, summary, uri):
    conf = "/home/kvmlab/.config/libvirt/libvirt.conf"
    before = host.check_output("sha256sum %s" % conf)
    run = site("-e", json.dumps({"kvmlab_host_libvirt_uri_default": uri}))
    assert run.rc != 0 and run.changed == 0, run
    assert "kvmlab_host_libvirt_uri_default: %s is not a plain libvirt URI" % json.dumps(uri) in " ".join(
        (run.stdout + run.stderr).split()), run
    assert host.check_output("sha256sum %s" % conf) == before
    summary["bad inputs refused"] += 1


def test_preflight_rejects_unsupported_os(host, site):
    host.run_test("printf 'ID=fedora\\nVERSION_ID=41\\nPRETTY_NAME=\"Fedora Linux 41\"\\n' "
                  "> /run/fake-os-release && mount --bind /run/fake-os-release /etc/os-release")
    try:
        run = site()
    finally:
        host.run_test("umount /etc/os-release")
    assert run.rc != 0, run
    assert "runs Fedora Linux 41. kvmlab.hypervisor.host supports Debian 12, Debian 13 and Arch Linux." \
        in run.stdout + run.stderr, run
    assert run.changed == 0, run


def test_system_places_as_cdrom_or_backing_file_are_refused(site, summary):
    """Cdroms and backing files never read system places or another guest's live data (the
    checks of the spec, before any change)."""
    cases = [
        (override("kali", cdroms=["/etc/shadow"]), "kvmlab_guests[kali].cdroms[0]: /etc/shadow lies in /etc"),
        (override("kali", cdroms=["/dev/kvmlab-disk"]), "kvmlab_guests[kali].cdroms[0]: /dev/kvmlab-disk lies in /dev"),
        (override("kali", disks=[{"name": "kali2.qcow2", "size": "1G", "backing_file": "/root/base.qcow2"}]),
         "kvmlab_guests[kali].disks[0].backing_file: /root/base.qcow2 lies in /root"),
        (override("kali", disks=[{"name": "kali2.qcow2", "size": "1G", "backing_file": "/mnt/vm/win11.qcow2"}]),
         "kvmlab_guests[kali].disks[0].backing_file: /mnt/vm/win11.qcow2 is the disk of guest win11"),
    ]
    for extra_vars, message in cases:
        run = site("--check", "-e", json.dumps(extra_vars))
        assert run.rc != 0 and run.changed == 0, run
        assert message in " ".join((run.stdout + run.stderr).split()), (message, run)
        summary["bad inputs refused"] += 1


def test_a_malformed_firmware_descriptor_is_named_with_the_fix(host, guest, name):
    """libvirt does not skip a QEMU firmware descriptor it cannot parse: it refuses every domain
    capabilities query (so every guest definition) while the file is there. The run stops before
    defining anything, naming the file and the fix; with the file gone, the guest is defined."""
    bad = "/etc/qemu/firmware/10-kvmlab-malformed.json"
    host.run_test("mkdir -p /etc/qemu/firmware && printf '{not json' > %s" % bad)
    spec = {"name": name, "state": "shutdown", "firmware": "uefi", "secure_boot": True, "virt_type": "qemu",
            "memory": "128M", "vcpus": 1, "graphics": "none", "video": "none",
            "disks": [{"name": name + ".qcow2", "pool": "vm", "size": "64M"}]}
    try:
        run = guest(spec)
        said = " ".join((run.stdout + run.stderr).split())
        assert run.rc != 0, run
        assert bad in said and "fix or remove the file" in said, run
        assert host.run(V + "dominfo " + name).rc != 0
    finally:
        host.run("rm -f " + bad)
    run = guest(spec)
    assert run.rc == 0, run
    assert host.run(V + "dominfo " + name).rc == 0
