"""Drift cases derived from a built domain XML: every attribute and every text it holds.

Shared by the unit tests (tests/unit/plugins/module_utils/test_drift_values.py, on libvirt's
dumpxml fixtures) and the Molecule battery (molecule/default/tests/test_drift_values.py, on the
real libvirtd), so both change the same values: whatever the builder writes, not a hand list.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from ansible_collections.kvmlab.hypervisor.plugins.module_utils import domain_merge as dx

# Values whose change is not drift to repair but a different guest or a refused change by design:
# the name is the guest's identity; a firmware feature or kind change needs reset_nvram.
SKIP = (("domain/name", None), ("domain/os/firmware/feature", "enabled"), ("domain/os", "firmware"))
# Other values a person could set for an attribute, by (element, attribute): an enum's neighbour.
ALTERNATES = {
    ("type", "machine"): {"q35": "pc", "pc": "q35"}, ("boot", "dev"): {"hd": "network", "cdrom": "fd"},
    ("cpu", "mode"): {"custom": "host-model", "host-passthrough": "host-model", "maximum": "host-model"},
    ("cpu", "match"): {"exact": "minimum"}, ("model", "fallback"): {"allow": "forbid"},
    ("timer", "name"): {"rtc": "tsc", "pit": "kvmclock", "hpet": "tsc", "hypervclock": "tsc"},
    ("disk", "type"): {"file": "block"}, ("driver", "type"): {"qcow2": "raw", "raw": "qcow2"},
    ("driver", "discard"): {"unmap": "ignore"}, ("target", "bus"): {"virtio": "scsi", "sata": "scsi"},
    ("input", "type"): {"tablet": "mouse"}, ("input", "bus"): {"usb": "virtio"},
    ("model", "type"): {"virtio": "vga", "qxl": "vga", "vga": "virtio", "e1000": "virtio"},
    ("vcpu", "placement"): {"static": "auto"}, ("interface", "type"): {"network": "bridge"},
}
FLIPS = {"yes": "no", "no": "yes", "on": "off", "off": "on", "kvm": "qemu", "qemu": "kvm", "utc": "localtime",
         "localtime": "utc", "destroy": "restart", "restart": "destroy", "catchup": "delay", "delay": "catchup"}


@dataclass(frozen=True)
class Value:
    """One attribute (or, with attr None, the text) of one element of the desired XML."""

    steps: tuple  # indexes of the element's ancestors' children, from the root down
    where: str  # tag path, for labels and SKIP
    attr: str | None
    original: str
    tag: str = ""

    @property
    def label(self) -> str:
        return "%s%s" % (self.where, "@" + self.attr if self.attr else "")

    def drifted(self) -> str:
        """Another value of the same kind, as a person editing the XML could write it."""
        value = self.original
        other = ALTERNATES.get((self.tag, self.attr), {}).get(value) or FLIPS.get(value)
        if not other and self.tag == "target" and self.attr == "dev" and value[-1].isalpha():
            other = value[:-1] + chr(ord(value[-1]) + 2)  # vda -> vdc: a device name of the same bus
        return other or _by_shape(value)

    def element(self, xml_root: ET.Element, desired_root: ET.Element) -> ET.Element | None:
        """The element of `xml_root` that matches this value's element of `desired_root`."""
        want, have = desired_root, xml_root
        for index in self.steps:
            child = list(want)[index]
            have = dict(_pairs(want, have)).get(id(child))
            want = child
            if have is None:
                return None
        return have

    def read(self, xml: str, desired: str) -> str | None:
        el = self.element(ET.fromstring(xml), ET.fromstring(desired))
        if el is None:
            return None
        return el.get(self.attr) if self.attr else (el.text or "").strip()


def _by_shape(value: str) -> str:
    if re.fullmatch(r"\d+", value):
        return str(int(value) + 1)
    if re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", value):
        return value[:-2] + ("00" if value[-2:] != "00" else "01")
    if re.fullmatch(r"\d+(,\d+|-\d+)*", value):  # a CPU list
        return value + ",0" if not value.startswith("0") else "1"
    try:
        ipaddress.ip_address(value)
        return "0.0.0.0"  # a console opened to every address
    except ValueError:
        return value + "-drift"


def _pairs(desired: ET.Element, current: ET.Element) -> list[tuple]:
    """(id of a desired child, its match in current), matched as the comparison matches them."""
    taken: set[int] = set()
    out = []
    for child in desired:
        match = dx._find(current, child, taken)
        if match is not None:
            taken.add(id(match))
        out.append((id(child), match))
    return out


def drifted_values(desired_xml: str) -> list[Value]:
    out: list[Value] = []

    def walk(el: ET.Element, steps: tuple, where: str) -> None:
        for attr, value in el.attrib.items():
            out.append(Value(steps, where, attr, value, el.tag))
        if (el.text or "").strip():
            out.append(Value(steps, where, None, el.text.strip(), el.tag))
        for i, child in enumerate(el):
            walk(child, (*steps, i), "%s/%s" % (where, dx._label(child)))

    walk(ET.fromstring(desired_xml), (), "domain")
    return [v for v in out if (re.sub(r"\[[^]]*\]", "", v.where), v.attr) not in SKIP]


def mutate(current_xml: str, desired_xml: str, *values: Value) -> str:
    """libvirt's XML with each value's element (matched to the desired XML) changed, as `virsh
    edit` would change it."""
    root, desired = ET.fromstring(current_xml), ET.fromstring(desired_xml)
    targets = [(v, v.element(root, desired)) for v in values]
    for value, el in targets:
        if el is None:
            raise ValueError("no element in libvirt's XML matches " + value.label)
        if value.attr:
            el.set(value.attr, value.drifted())
        else:
            el.text = value.drifted()
    return ET.tostring(root, encoding="unicode")
