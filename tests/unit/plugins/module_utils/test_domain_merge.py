"""Desired domain XML against libvirt 9 and 11 dumpxml output of the same domain."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import domain_merge as dx

FIXTURES = Path(__file__).parent / "fixtures" / "domain"
DESIRED = (FIXTURES / "win11-desired.xml").read_text()
LIBVIRT = {v: (FIXTURES / ("win11-%s.xml" % v)).read_text() for v in ("libvirt9", "libvirt11")}


def edit(xml: str, fn) -> str:
    root = ET.fromstring(xml)
    fn(root)
    return ET.tostring(root, encoding="unicode")


@pytest.fixture(params=sorted(LIBVIRT))
def current(request):
    return LIBVIRT[request.param]


def test_what_libvirt_adds_is_not_drift(current):
    # uuid, PCI addresses, controllers, expanded machine type, firmware paths, watchdog (11).
    assert dx.differences(DESIRED, current) == []


def test_changed_value_is_reported_and_merged_keeping_generated_values(current):
    desired = edit(DESIRED, lambda r: (r.find("memory").__setattr__("text", "8388608"),
                                       r.find("currentMemory").__setattr__("text", "8388608")))
    assert dx.differences(desired, current) == ["domain/memory: '16777216' -> '8388608'",
                                                "domain/currentMemory: '16777216' -> '8388608'"]
    merged = ET.fromstring(dx.merge(desired, current))
    assert merged.findtext("memory") == "8388608"
    assert merged.findtext("uuid") == ET.fromstring(current).findtext("uuid")
    # The expanded machine type stays: re-expanding q35 could change the guest's hardware.
    assert merged.find("os/type").get("machine").startswith("pc-q35-")
    assert dx.differences(desired, dx.merge(desired, current)) == []


def test_device_is_matched_by_key_and_keeps_its_address(current):
    desired = edit(DESIRED, lambda r: r.find("devices/interface/model").set("type", "e1000e"))
    assert dx.differences(desired, current) == [
        "domain/devices/interface[52:54:00:ab:93:44]/model@type: 'virtio' -> 'e1000e'"]
    merged = ET.fromstring(dx.merge(desired, current))
    nic = merged.find("devices/interface")
    assert nic.find("model").get("type") == "e1000e"
    assert nic.find("address").get("bus") == "0x01"


def test_removed_owned_device_is_drift_and_merge_drops_it(current):
    def drop_cdrom(root):
        devices = root.find("devices")
        devices.remove(next(d for d in devices.findall("disk") if d.get("device") == "cdrom"))

    desired = edit(DESIRED, drop_cdrom)
    assert dx.differences(desired, current) == ["domain/devices/disk[sda]: not in the spec, would be removed"]
    merged = ET.fromstring(dx.merge(desired, current))
    assert [d.find("target").get("dev") for d in merged.findall("devices/disk")] == ["vda"]
    # Controllers and the balloon libvirt added stay.
    assert merged.find("devices/controller[@type='sata']") is not None
    assert merged.find("devices/memballoon") is not None


def test_added_device_goes_next_to_its_kind(current):
    def add_disk(root):
        disk = ET.SubElement(root.find("devices"), "disk", type="file", device="disk")
        ET.SubElement(disk, "source", file="/mnt/vm/data.qcow2")
        ET.SubElement(disk, "target", dev="vdb", bus="virtio")

    desired = edit(DESIRED, add_disk)
    assert dx.differences(desired, current) == ["domain/devices/disk[vdb]: missing, would be added"]
    merged = ET.fromstring(dx.merge(desired, current))
    tags = [c.tag for c in merged.find("devices")]
    assert tags.index("controller") > max(i for i, t in enumerate(tags) if t == "disk")
    assert [d.find("target").get("dev") for d in merged.findall("devices/disk")] == ["vda", "sda", "vdb"]
    assert dx.differences(desired, dx.merge(desired, current)) == []


def test_vcpupin_matched_by_vcpu(current):
    desired = edit(DESIRED, lambda r: r.find("cputune/vcpupin[@vcpu='3']").set("cpuset", "9"))
    assert dx.differences(desired, current) == ["domain/cputune/vcpupin[3]@cpuset: '5' -> '9'"]


@pytest.mark.parametrize(("machine", "drift"), [("q35", False), ("pc", True), ("pc-q35-5.2", True)])
def test_machine_aliases(current, machine, drift):
    desired = edit(DESIRED, lambda r: r.find("os/type").set("machine", machine))
    assert bool(dx.differences(desired, current)) is drift


def test_mac_case_is_not_drift(current):
    desired = edit(DESIRED, lambda r: r.find("devices/interface/mac").set("address", "52:54:00:AB:93:44"))
    assert dx.differences(desired, current) == []


def test_missing_spec_element(current):
    desired = edit(DESIRED, lambda r: ET.SubElement(r.find("features"), "vmport", state="off"))
    assert dx.differences(desired, current) == ["domain/features/vmport: missing, would be added"]


def test_a_disk_on_a_cdroms_former_target_inherits_nothing_from_it(current):
    """The cdrom leaves the spec and a new disk takes its target (sata): the merged disk has no
    <readonly/> (libvirt: "readonly sata disks are not supported") and no other part of the
    cdrom, and the next comparison finds nothing."""
    def cdrom_to_disk(root):
        cdrom = next(d for d in root.find("devices").findall("disk") if d.get("device") == "cdrom")
        dev = cdrom.find("target").get("dev")
        root.find("devices").remove(cdrom)
        root.find("devices").insert(0, ET.fromstring(
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            "<source file='/mnt/vm/data.qcow2'/><target dev='%s' bus='sata'/></disk>" % dev))

    desired = edit(DESIRED, cdrom_to_disk)
    merged = dx.merge(desired, current)
    disk = next(d for d in ET.fromstring(merged).find("devices").findall("disk")
                if d.find("source") is not None and d.find("source").get("file") == "/mnt/vm/data.qcow2")
    assert disk.get("device") == "disk" and disk.find("readonly") is None
    assert {c.tag for c in disk} == {"driver", "source", "target"}
    assert dx.differences(desired, merged) == []


@pytest.mark.parametrize(("tag", "attr", "old", "new"), [
    ("interface", "type", "network", "bridge"), ("channel", "type", "spicevmc", "unix"),
    ("serial", "type", "file", "pty"), ("disk", "device", "cdrom", "disk"), ("disk", "type", "block", "file")])
def test_a_device_whose_kind_changes_is_replaced(tag, attr, old, new):
    current = ("<domain><devices><%s %s='%s'><target dev='x' name='x' port='0'/><old-part/></%s></devices></domain>"
               % (tag, attr, old, tag))
    desired = "<domain><devices><%s %s='%s'><target dev='x' name='x' port='0'/></%s></devices></domain>" % (
        tag, attr, new, tag)
    merged = ET.fromstring(dx.merge(desired, current)).find("devices/" + tag)
    assert merged.get(attr) == new and merged.find("old-part") is None
    # The same kind keeps what libvirt added.
    same = ET.fromstring(dx.merge(current.replace("<old-part/>", ""), current)).find("devices/" + tag)
    assert same.find("old-part") is not None
