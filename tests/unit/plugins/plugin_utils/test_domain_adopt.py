"""Adopting a guest defined by virt-install (or virt-manager): the spec owns its parts, and what
it does not own, libosinfo's <metadata> and any other namespaced element, is written back as
libvirt gave it, prefixes and namespace declarations included."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import domain_merge as dx
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.topology import read_topology
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.site import resolve
from lxml import etree

FIXTURES = Path(__file__).parents[1] / "module_utils" / "fixtures"
VIRT_INSTALL = (FIXTURES / "domain" / "virt-install-win11.xml").read_text()
LIBVIRT_QEMU = (FIXTURES / "domain" / "adopted-qemu-libvirt9.xml").read_text()
CI_2CPU = FIXTURES / "sysfs-ci-2cpu"
POOLS = [{"name": "vm", "path": "/mnt/vm"}, {"name": "default", "path": "/var/lib/libvirt/images"}]
LIBOSINFO = "http://libosinfo.org/xmlns/libvirt/domain/1.0"
QEMU = "http://libvirt.org/schemas/domain/qemu/1.0"
# The guest virt-install made, as a spec takes it over: same name, MAC and disk; the spec's
# NIC model, console and guest agent channel.
SPEC = {"name": "adopted", "memory": "4G", "vcpus": 2, "firmware": "uefi", "secure_boot": True,
        "enrolled_keys": True, "windows": True, "tpm": "emulator", "graphics": "spice", "video": "qxl",
        "disks": [{"name": "adopted.qcow2", "pool": "default", "size": "20G"}],
        "interfaces": [{"network": "default", "mac": "52:54:00:3c:5e:7a"}]}


def desired_xml() -> str:
    topology = read_topology(str(CI_2CPU / "cpu"), str(CI_2CPU / "node"), "/nonexistent", "/nonexistent")
    guests, errors = resolve([SPEC], {"pools": POOLS, "topology": topology})
    assert errors == []
    return guests[0]["xml"]


def block(xml: str, tag: str) -> str:
    """The serialised <tag>...</tag> substring, exactly as written."""
    found = re.findall(r"<%s[ >].*?</%s>" % (re.escape(tag), re.escape(tag)), xml, re.S)
    assert len(found) == 1, (tag, found)
    return found[0]


@pytest.fixture(params=["virt-install", "libvirt9+qemu"])
def current(request):
    return {"virt-install": VIRT_INSTALL, "libvirt9+qemu": LIBVIRT_QEMU}[request.param]


def test_the_adopted_guest_differs_only_in_owned_parts(current):
    diffs = dx.differences(desired_xml(), current)
    assert "domain/devices/interface[52:54:00:3c:5e:7a]/model@type: 'e1000e' -> 'virtio'" in diffs
    assert not [d for d in diffs if "metadata" in d or "libosinfo" in d or "commandline" in d], diffs
    assert not [d for d in diffs if "disk[vda]" in d and "source" in d], diffs


def test_libosinfo_metadata_is_written_back_byte_identical(current):
    merged = dx.merge(desired_xml(), current)
    assert block(merged, "metadata") == block(current, "metadata")
    assert "ns0" not in merged and 'xmlns:libosinfo="%s"' % LIBOSINFO in merged
    root = etree.fromstring(merged)
    assert root.find("metadata/{%s}libosinfo/{%s}os" % (LIBOSINFO, LIBOSINFO)).get("id") == \
        "http://microsoft.com/win/11"


def test_only_owned_parts_change_and_the_mac_and_disk_are_kept(current):
    desired = desired_xml()
    merged = etree.fromstring(dx.merge(desired, current))
    before = etree.fromstring(current)
    nic = merged.find("devices/interface")
    assert nic.find("mac").get("address") == "52:54:00:3c:5e:7a" and nic.find("model").get("type") == "virtio"
    assert [d.get("file") for d in merged.findall("devices/disk/source")] == ["/var/lib/libvirt/images/adopted.qcow2"]
    assert merged.findtext("uuid") == before.findtext("uuid")
    # What the spec does not own is canonically the same: controllers, sound, redirdevs.
    for path in ("devices/controller", "devices/sound", "devices/redirdev", "pm"):
        assert [dx.canonical(e) for e in merged.findall(path)] == [dx.canonical(e) for e in before.findall(path)], path
    # The console is the spec's: virt-install's target-less one becomes the serial port's.
    assert [dx.canonical(e) for e in merged.findall("devices/console")] == \
        ['<console type="pty"><target port="0" type="serial"></target></console>']


def test_a_second_pass_changes_nothing(current):
    desired = desired_xml()
    merged = dx.merge(desired, current)
    assert dx.differences(desired, merged) == []
    assert dx.merge(desired, merged) == merged


def test_a_foreign_namespaced_element_elsewhere_is_kept_verbatim():
    merged = dx.merge(desired_xml(), LIBVIRT_QEMU)
    # libvirt writes its own elements with single quotes, lxml with double ones: the same
    # canonical XML, with the same prefix and lines.
    assert block(merged, "qemu:commandline") == block(LIBVIRT_QEMU, "qemu:commandline").replace("'", '"')
    commandline = "{%s}commandline" % QEMU
    assert dx.canonical(etree.fromstring(merged).find(commandline)) == \
        dx.canonical(etree.fromstring(LIBVIRT_QEMU).find(commandline))
    # Its namespace stays declared on the root, with its own prefix, as libvirt writes it.
    assert merged.startswith("<domain xmlns:qemu=\"%s\" type=\"kvm\">" % QEMU)
    assert etree.fromstring(merged).nsmap == {"qemu": QEMU}


def test_pretty_keeps_the_prefixes():
    shown = dx.pretty(LIBVIRT_QEMU)
    assert "<libosinfo:os " in shown and "<qemu:arg " in shown and "ns0" not in shown


def test_canonical_form_ignores_quotes_attribute_order_and_indentation():
    one = etree.fromstring("<a xmlns:x='urn:x'>\n  <x:b k='1' j='2'>\n    <c/>\n  </x:b>\n</a>")
    other = etree.fromstring('<a xmlns:x="urn:x"><x:b j="2" k="1"><c></c></x:b></a>')
    assert dx.canonical(one) == dx.canonical(other)
    assert dx.canonical(one[0]) == dx.canonical(other[0]) == '<x:b xmlns:x="urn:x" j="2" k="1"><c></c></x:b>'
    # Prefixes are kept: they are not the collection's to change.
    assert dx.canonical(one) != dx.canonical(etree.fromstring('<a xmlns:y="urn:x"><y:b j="2" k="1"><c/></y:b></a>'))
