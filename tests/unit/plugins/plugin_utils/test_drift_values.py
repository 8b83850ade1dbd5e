"""Drift of every value the builder writes, derived from the built XML itself, not from a list.

For each demo guest, every attribute and every text the domain XML holds is changed, one at a
time, in what libvirt holds (its dumpxml of the same guest, with that value edited as `virsh edit`
would). Each change must be reported as a difference, and the merged definition the module would
define must hold the spec's value again and report no difference.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import domain_merge as dx
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.topology import read_topology
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.site import resolve
from drift_values import drifted_values, mutate

from .test_guest import demo

FIXTURES = Path(__file__).parents[1] / "module_utils" / "fixtures" / "domain"
CI_2CPU = Path(__file__).parents[1] / "module_utils" / "fixtures" / "sysfs-ci-2cpu"
POOLS = [{"name": "vm", "path": "/mnt/vm"}, {"name": "default", "path": "/var/lib/libvirt/images"}]


def demo_xml(vm: str) -> str:
    topology = read_topology(str(CI_2CPU / "cpu"), str(CI_2CPU / "node"), "/nonexistent", "/nonexistent")
    guests, errors = resolve([demo(vm)], {"pools": POOLS, "topology": topology})
    assert errors == []
    root = ET.fromstring(guests[0]["xml"])
    for disk in root.findall("devices/disk[@device='cdrom']"):  # the demo host has no ISOs
        disk.remove(disk.find("source"))
    return ET.tostring(root, encoding="unicode")


CASES = [(vm, value) for vm in ("win11", "arch", "kali") for value in drifted_values(demo_xml(vm))]


def test_every_guest_has_many_values():
    counts = {vm: sum(1 for case in CASES if case[0] == vm) for vm in ("win11", "arch", "kali")}
    assert all(n >= 40 for n in counts.values()), counts


@pytest.mark.parametrize(("vm", "value"), CASES, ids=["%s:%s" % (vm, v.label) for vm, v in CASES])
def test_each_value_drifted_is_reported_and_repaired(vm, value):
    desired = demo_xml(vm)
    libvirt = dx.merge(desired, (FIXTURES / ("site-%s-libvirt9.xml" % vm)).read_text())
    assert dx.differences(desired, libvirt) == []
    drifted = mutate(libvirt, desired, value)
    assert drifted != libvirt
    assert dx.differences(desired, drifted) != [], value.label
    repaired = dx.merge(desired, drifted)
    assert dx.differences(desired, repaired) == [], value.label
    assert value.read(repaired, desired) == value.original, value.label


def test_mutate_leaves_the_desired_xml_alone():
    desired = demo_xml("kali")
    before = copy.deepcopy(desired)
    mutate(desired, desired, drifted_values(desired)[0])
    assert desired == before


def test_a_console_edited_to_listen_nowhere_is_repaired_in_both_places():
    """As seen on libvirt 9: an edit left <listen type='none'/> beside the address and dropped
    the attributes; the merged definition must hold the spec's console alone."""
    desired = demo_xml("win11")
    libvirt = dx.merge(desired, (FIXTURES / "site-win11-libvirt9.xml").read_text())
    root = ET.fromstring(libvirt)
    graphics = root.find("devices/graphics")
    graphics.attrib = {"type": "spice"}
    graphics.insert(0, ET.Element("listen", {"type": "none"}))
    drifted = ET.tostring(root, encoding="unicode")
    assert "domain/devices/graphics[spice]/listen[none]: not in the spec, would be removed" in \
        dx.differences(desired, drifted)
    repaired = ET.fromstring(dx.merge(desired, drifted)).find("devices/graphics")
    assert repaired.get("listen") == "127.0.0.1" and repaired.get("autoport") == "yes"
    assert [(el.get("type"), el.get("address")) for el in repaired.findall("listen")] == [("address", "127.0.0.1")]


def test_numa_placement_left_by_an_edit_is_removed():
    """libvirt adds <numatune><memory placement='auto'/></numatune> with <vcpu placement='auto'>,
    and restores the latter from the former: both go."""
    desired = demo_xml("kali")
    libvirt = dx.merge(desired, (FIXTURES / "site-kali-libvirt9.xml").read_text())
    root = ET.fromstring(libvirt)
    root.find("vcpu").set("placement", "auto")
    numatune = ET.SubElement(root, "numatune")
    ET.SubElement(numatune, "memory", {"mode": "strict", "placement": "auto"})
    drifted = ET.tostring(root, encoding="unicode")
    assert "domain/numatune: not in the spec, would be removed" in dx.differences(desired, drifted)
    repaired = ET.fromstring(dx.merge(desired, drifted))
    assert repaired.find("numatune") is None and repaired.find("vcpu").get("placement") == "static"


def test_an_input_edited_into_another_is_replaced_and_libvirts_own_are_kept():
    """Seen on libvirt 9: the tablet edited into a virtio mouse (keeping its USB address) was
    accepted by define and failed at the next start; the spec's tablet comes back alone."""
    desired = demo_xml("win11")
    libvirt = dx.merge(desired, (FIXTURES / "site-win11-libvirt9.xml").read_text())
    root = ET.fromstring(libvirt)
    tablet = root.find("devices/input[@type='tablet']")
    tablet.set("type", "mouse")
    tablet.set("bus", "virtio")
    drifted = ET.tostring(root, encoding="unicode")
    assert "domain/devices/input[mouse,virtio]: not in the spec, would be removed" in dx.differences(desired, drifted)
    inputs = [(i.get("type"), i.get("bus")) for i in ET.fromstring(dx.merge(desired, drifted)).findall("devices/input")]
    assert ("mouse", "virtio") not in inputs and ("tablet", "usb") in inputs
    assert ("mouse", "ps2") in inputs and ("keyboard", "ps2") in inputs
