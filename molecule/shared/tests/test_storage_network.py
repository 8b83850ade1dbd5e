"""The storage and network roles' result, asked of the system and of libvirt."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

VIRSH = "virsh -c qemu:///system "
POOLS = {"vm": "/mnt/vm", "iso": "/mnt/vm/iso", "default": "/var/lib/libvirt/images"}


def test_vm_subvolume_mounted(host):
    mount = json.loads(host.check_output("findmnt --json --output SOURCE,FSTYPE,OPTIONS /mnt/vm"))
    fs = mount["filesystems"][0]
    assert fs["fstype"] == "btrfs"
    assert "subvol=/@vm" in fs["options"].split(",")
    # ... through fstab, so it comes back at boot.
    assert host.run_test("findmnt --fstab --noheadings --output OPTIONS /mnt/vm").stdout.strip() == "subvol=@vm"


def test_vm_storage_is_nodatacow(host):
    assert "C" in host.check_output("lsattr -d /mnt/vm").split()[0]
    # Images created later inherit it.
    assert "C" in host.check_output("lsattr /mnt/vm/scratch.qcow2").split()[0]


def test_layout(host):
    iso, tpm = host.file("/mnt/vm/iso"), host.file("/mnt/vm/tpm")
    assert iso.is_directory
    assert tpm.is_directory
    assert (tpm.user, tpm.group) == ("tss", "tss")
    assert tpm.mode & 0o007 == 0, "TPM state must not be world-readable"


@pytest.mark.parametrize(("name", "path"), POOLS.items())
def test_pool(host, name, path):
    info = host.check_output(VIRSH + "pool-info " + name)
    assert "State:          running" in info
    assert "Autostart:      yes" in info
    xml = ET.fromstring(host.check_output(VIRSH + "pool-dumpxml --inactive " + name))
    assert xml.findtext("target/path") == path


def test_volume_is_qcow2_with_metadata(host):
    info = json.loads(host.check_output("qemu-img info --output=json /mnt/vm/scratch.qcow2"))
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == 64 * 1024 * 1024
    assert info["format-specific"]["data"]["compat"] == "1.1"
    assert "scratch.qcow2" in host.check_output(VIRSH + "vol-list vm")


def test_network_reservation_and_bridge(host):
    for flags in ("", "--inactive "):
        xml = ET.fromstring(host.check_output(VIRSH + "net-dumpxml " + flags + "default"))
        hosts = [h.attrib for h in xml.findall("ip/dhcp/host")]
        assert len(hosts) == 1
        assert hosts[0]["ip"] == "192.168.122.136"
        assert hosts[0]["name"] == "win11"
        assert hosts[0]["mac"].startswith("52:54:00:")
        assert xml.find("bridge").get("name") == "virbr0"
        assert xml.find("forward").get("mode") == "nat"
    info = host.check_output(VIRSH + "net-info default")
    assert "Active:         yes" in info
    assert "Autostart:      yes" in info
    addr = json.loads(host.check_output("ip -j -4 addr show dev virbr0"))
    assert {(a["local"], a["prefixlen"]) for a in addr[0]["addr_info"]} == {("192.168.122.1", 24)}


def test_dnsmasq_serves_the_reservation(host):
    # libvirt hands reservations to dnsmasq through its hostsfile.
    hostsfile = host.file("/var/lib/libvirt/dnsmasq/default.hostsfile").content_string
    assert "192.168.122.136" in hostsfile and "win11" in hostsfile


def test_ip_forwarding(host):
    assert host.check_output("sysctl -n net.ipv4.ip_forward") == "1"
    assert "net.ipv4.ip_forward=1" in host.file("/etc/sysctl.d/90-kvmlab-forwarding.conf").content_string.replace(
        " ", "")
