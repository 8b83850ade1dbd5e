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
import yaml
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import domain_xml as dx
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.site import resolve
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.topology import read_topology
from drift_values import drifted_values, mutate

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = Path(__file__).parent / "fixtures" / "domain"
CI_2CPU = Path(__file__).parent / "fixtures" / "sysfs-ci-2cpu"
POOLS = [{"name": "vm", "path": "/mnt/vm"}, {"name": "default", "path": "/var/lib/libvirt/images"}]


def demo_xml(vm: str) -> str:
    defaults = yaml.safe_load((ROOT / "roles" / ("vm_" + vm) / "defaults" / "main.yml").read_text())
    spec = defaults["vm_%s_guest" % vm]
    if vm == "kali":
        spec = yaml.safe_load(yaml.safe_dump(spec).replace("{{ vm_kali_release }}", defaults["vm_kali_release"]))
    overrides = yaml.safe_load((ROOT / "inventories/demo/group_vars/hypervisors.yml").read_text())["guest_overrides"]
    topology = read_topology(str(CI_2CPU / "cpu"), str(CI_2CPU / "node"), "/nonexistent", "/nonexistent")
    guests, errors = resolve([dict(spec, **overrides.get(vm, {}))], {"pools": POOLS, "topology": topology})
    assert errors == []
    root = ET.fromstring(guests[0]["xml"])
    for disk in root.findall("devices/disk[@device='cdrom']"):  # the demo host has no ISOs
        disk.remove(disk.find("source"))
    return ET.tostring(root, encoding="unicode")


CASES = [(vm, value) for vm in ("win11", "arch", "kali") for value in drifted_values(demo_xml(vm))]


def test_every_guest_has_many_values():
    counts = {vm: sum(1 for v, _ in CASES if v == vm) for vm in ("win11", "arch", "kali")}
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
