# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare a desired libvirt domain XML with libvirt's, owning only what the desired XML says.

The guest engine (issue 4) renders the desired XML from a guest spec. libvirt's inactive XML of
the same domain carries much more: a uuid, PCI addresses, controllers, a USB tablet, a memory
balloon, expanded machine types (q35 -> pc-q35-7.2), firmware paths it chose. None of that is
drift. The rules:

- every attribute, text and child the desired XML has must be in libvirt's XML with an equal
  value (after normalising: machine aliases, MAC case, surrounding whitespace);
- repeated children are matched by a key (a disk by its target dev, an interface by its MAC, a
  vcpupin by its vcpu, ...), not by position;
- what libvirt's XML has beyond that is ignored, except devices of the kinds the spec owns
  (disks, interfaces, filesystems, graphics, TPMs, hostdevs): one the spec no longer lists is a
  difference, and `merge` removes it;
- `merge` builds the XML to define from libvirt's, applying the desired parts, so that uuid,
  PCI addresses and generated values survive a redefinition (guests see the same hardware).

Only the standard library's ElementTree is needed.
"""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET

# How repeated children are matched: tag -> function(element) -> key.
KEYS = {
    "disk": lambda e: e.find("target").get("dev") if e.find("target") is not None else None,
    "interface": lambda e: (e.find("mac").get("address", "").lower() if e.find("mac") is not None else None),
    "filesystem": lambda e: e.find("target").get("dir") if e.find("target") is not None else None,
    "controller": lambda e: (e.get("type"), e.get("index")),
    "vcpupin": lambda e: e.get("vcpu"),
    "iothreadpin": lambda e: e.get("iothread"),
    "timer": lambda e: e.get("name"),
    "feature": lambda e: e.get("name"),
    "input": lambda e: (e.get("type"), e.get("bus")),
    "channel": lambda e: e.find("target").get("name") if e.find("target") is not None else None,
    "graphics": lambda e: e.get("type"),
    "listen": lambda e: e.get("type"),
    "boot": lambda e: e.get("dev"),
    "hostdev": lambda e: ET.tostring(e.find("source"), encoding="unicode") if e.find("source") is not None else None,
}
# Devices the spec owns: libvirt's extra ones of these kinds are differences.
OWNED_DEVICES = ("disk", "interface", "filesystem", "graphics", "tpm", "hostdev")


def _machine(value: str) -> str:
    """'pc-q35-7.2' and 'q35' are the same machine family; 'pc-i440fx-7.2' and 'pc' too."""
    if re.fullmatch(r"pc-q35-[\d.]+", value):
        return "q35"
    if re.fullmatch(r"pc-i440fx-[\d.]+", value):
        return "pc"
    return value


def _same(tag: str, attr: str, have: str | None, want: str) -> bool:
    """Whether libvirt's value `have` satisfies the desired `want`."""
    if have is None:
        return False
    have, want = have.strip(), want.strip()
    if tag == "type" and attr == "machine":
        # An alias (q35, pc) accepts any version libvirt expanded it to; a version must match.
        return have == want or _machine(have) == want
    if tag == "mac" and attr == "address":
        return have.lower() == want.lower()
    return have == want


def _key(el: ET.Element):
    fn = KEYS.get(el.tag)
    return (el.tag, fn(el)) if fn else (el.tag, None)


def _label(el: ET.Element) -> str:
    key = _key(el)[1]
    if key is None:
        return el.tag
    return "%s[%s]" % (el.tag, ",".join(str(k) for k in key) if isinstance(key, tuple) else key)


def _find(parent: ET.Element, want: ET.Element, taken: set) -> ET.Element | None:
    key = _key(want)
    for child in parent:
        if id(child) not in taken and child.tag == want.tag and (key[1] is None or _key(child) == key):
            return child
    return None


def _compare(desired: ET.Element, current: ET.Element, path: str, out: list[str]) -> None:
    for attr, value in desired.attrib.items():
        have = current.get(attr)
        if not _same(desired.tag, attr, have, value):
            out.append("%s@%s: %r -> %r" % (path, attr, have, value))
    if (desired.text or "").strip() and (desired.text or "").strip() != (current.text or "").strip():
        out.append("%s: %r -> %r" % (path, (current.text or "").strip(), desired.text.strip()))
    taken: set[int] = set()
    for child in desired:
        match = _find(current, child, taken)
        child_path = "%s/%s" % (path, _label(child))
        if match is None:
            out.append("%s: missing, would be added" % child_path)
            continue
        taken.add(id(match))
        _compare(child, match, child_path, out)
    if desired.tag == "devices":
        for child in current:
            if child.tag in OWNED_DEVICES and id(child) not in taken:
                out.append("%s/%s: not in the spec, would be removed" % (path, _label(child)))


def differences(desired_xml: str, current_xml: str) -> list[str]:
    """What would change, one line per difference; empty when the domain matches the spec."""
    desired, current = ET.fromstring(desired_xml), ET.fromstring(current_xml)
    out: list[str] = []
    _compare(desired, current, desired.tag, out)
    return out


def _merge(desired: ET.Element, current: ET.Element) -> ET.Element:
    result = copy.copy(current)  # shallow: children are rebuilt below
    result.attrib = dict(current.attrib)
    for attr, value in desired.attrib.items():
        if not _same(desired.tag, attr, current.get(attr), value):
            result.set(attr, value)
    if (desired.text or "").strip():
        result.text = desired.text.strip()
    children = list(current)
    taken: set[int] = set()
    replaced: dict[int, ET.Element] = {}
    added: list[ET.Element] = []
    for child in desired:
        match = _find(current, child, taken)
        if match is None:
            added.append(copy.deepcopy(child))
        else:
            taken.add(id(match))
            replaced[id(match)] = _merge(child, match)
    kept = []
    for child in children:
        if desired.tag == "devices" and child.tag in OWNED_DEVICES and id(child) not in taken:
            continue
        kept.append(replaced.get(id(child), child))
    for new in added:
        # Next to its siblings of the same kind, so libvirt's element order is kept.
        same = [i for i, c in enumerate(kept) if c.tag == new.tag]
        kept.insert(same[-1] + 1 if same else len(kept), new)
    for child in list(result):
        result.remove(child)
    result.extend(kept)
    return result


def merge(desired_xml: str, current_xml: str) -> str:
    """The XML to define: libvirt's, with the desired parts applied and owned extras removed."""
    return ET.tostring(_merge(ET.fromstring(desired_xml), ET.fromstring(current_xml)), encoding="unicode")
