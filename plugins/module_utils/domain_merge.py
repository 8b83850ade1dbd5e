# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare a desired libvirt domain XML with libvirt's, owning only what the desired XML says.

The guest engine renders the desired XML from a guest spec. libvirt's inactive XML of
the same domain carries much more: a uuid, PCI addresses, controllers, a USB tablet, a memory
balloon, expanded machine types (q35 -> pc-q35-7.2), firmware paths it chose. None of that is
drift. The rules:

- every attribute, text and child the desired XML has must be in libvirt's XML with an equal
  value (after normalising: machine aliases, MAC case, surrounding whitespace);
- repeated children are matched by a key (a disk by its target dev, an interface by its MAC, a
  vcpupin by its vcpu, ...), not by position;
- what libvirt's XML has beyond that is ignored, except children of the kinds the spec owns
  (OWNED: disks, interfaces, filesystems, graphics, channels, serial ports, consoles, TPMs,
  hostdevs and inputs under <devices>; the pins under <cputune>; the boot order under <os>;
  Hyper-V enlightenments and SMM under <features>; timers under <clock>; a console's <listen>s;
  <memoryBacking> and <iothreads>; a disk driver's iothread attribute): one the spec no longer
  lists is a difference, and `merge` removes it;
- an empty desired element (such as a <cputune/> without pins) that libvirt dropped is not a
  difference;
- `merge` builds the XML to define from libvirt's, applying the desired parts, so that uuid,
  PCI addresses and generated values survive a redefinition (guests see the same hardware).
  It edits libvirt's tree in place with lxml: what the spec does not own (the libosinfo
  <metadata> virt-install writes, a <qemu:commandline>, any other namespace) is written back
  with its own prefixes and namespace declarations, as libvirt gave it. ElementTree would
  rename every prefix to ns0, ns1 at each redefinition.

Needs lxml (python3-lxml on Debian, python-lxml on Arch; the host role installs it): modules
check HAS_LXML and fail with missing_required_lib otherwise.
"""

from __future__ import annotations

import copy
import re
import traceback
import xml.etree.ElementTree as ET

try:
    from lxml import etree
except ImportError:
    etree = None
    HAS_LXML = False
    LXML_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_LXML = True
    LXML_IMPORT_ERROR = None


def parse(xml: str):
    """An lxml tree of a domain XML, without comments (libvirt keeps none), entities or network."""
    parser = etree.XMLParser(remove_comments=True, remove_pis=True, resolve_entities=False, no_network=True)
    return etree.fromstring(xml.encode("utf-8") if isinstance(xml, str) else xml, parser)


def serialize(root) -> str:
    return etree.tostring(root, encoding="unicode")


def canonical(el) -> str:
    """An element in canonical XML (C14N 2.0, text whitespace stripped, without its tail), for
    keys and comparisons: the same for equal XML whatever its quotes, attribute order, empty-tag
    form or indentation. Takes lxml and ElementTree elements (tests/drift_values.py walks
    ElementTree)."""
    if isinstance(el, ET.Element):
        el = copy.copy(el)
        el.tail = None
        return ET.canonicalize(ET.tostring(el, encoding="unicode"), strip_text=True)
    # Serialised first: that declares the namespaces it uses from its ancestors.
    return etree.canonicalize(etree.tostring(el, encoding="unicode", with_tail=False), strip_text=True)


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
    "serial": lambda e: e.find("target").get("port") if e.find("target") is not None else None,
    "console": lambda e: e.find("target").get("port") if e.find("target") is not None else None,
    "graphics": lambda e: e.get("type"),
    "listen": lambda e: e.get("type"),
    "boot": lambda e: e.get("dev"),
    "hostdev": lambda e: canonical(e.find("source")) if e.find("source") is not None else None,
}
# Children the spec owns, per parent: libvirt's extra ones of these kinds are differences.
OWNED = {
    "devices": ("disk", "interface", "filesystem", "graphics", "channel", "tpm", "hostdev", "input", "serial",
                "console"),
    "cputune": ("vcpupin", "emulatorpin", "iothreadpin"),
    "os": ("boot",),
    "features": ("hyperv", "smm"),
    "hyperv": "*",
    "clock": ("timer",),
    # Top level: the spec's memory backing (virtiofs, huge pages) and I/O threads, and NUMA
    # placement, which the spec's pins own (libvirt ties <numatune placement='auto'> to
    # <vcpu placement='auto'>: one left behind would bring the other back).
    "domain": ("memoryBacking", "iothreads", "numatune"),
    "memoryBacking": "*",
    # A console's addresses: one libvirt's XML has beyond the spec's (such as a <listen
    # type='none'/> left by an edit) would keep the console off its address.
    "graphics": ("listen",),
}
# Attributes the spec owns: one libvirt's XML has and the spec dropped is a difference, and
# `merge` removes it (a disk's iothread outlives no <iothreads>; a console password set by hand
# goes when the spec has none).
OWNED_ATTRIBUTES = {"driver": ("iothread",), "graphics": ("passwd",)}


# Elements whose kind is set by attributes: when one changes, what the old kind had (libvirt's
# additions, such as migratable='on' of a host-passthrough CPU, or a cdrom's <readonly/> when a
# disk takes the cdrom's target) must not survive, so the element is replaced by the desired one.
KIND_ATTRIBUTES = {
    "cpu": ("mode",),
    "disk": ("type", "device"),
    "interface": ("type",),
    "backend": ("type",),  # a TPM's: emulator or external
    "channel": ("type",),
    "serial": ("type",),
    "console": ("type",),
    "graphics": ("type",),
    "filesystem": ("type",),
}


def _kind_changed(desired, current) -> bool:
    return any(desired.get(attr) is not None and desired.get(attr) != current.get(attr)
               for attr in KIND_ATTRIBUTES.get(desired.tag, ()))


# Devices libvirt adds to every guest by itself (x86's PS/2 mouse and keyboard): of an owned
# kind, but never drift.
IMPLICIT = {("input", ("mouse", "ps2")), ("input", ("keyboard", "ps2"))}


def _owned(parent: str, child) -> bool:
    kinds = OWNED.get(parent, ())
    return (kinds == "*" or child.tag in kinds) and _key(child) not in IMPLICIT


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


def _key(el):
    fn = KEYS.get(el.tag)
    return (el.tag, fn(el)) if fn else (el.tag, None)


def _label(el) -> str:
    key = _key(el)[1]
    if key is None:
        return el.tag
    return "%s[%s]" % (el.tag, ",".join(str(k) for k in key) if isinstance(key, tuple) else key)


def _find(parent, want, taken: set):
    """The first child of `parent` of `want`'s kind and key whose id is not in `taken`.

    Works on lxml and ElementTree elements. lxml makes a new Python object for an element each
    time one is asked for unless one is still referenced, so callers that keep ids in `taken`
    hold a list of `parent`'s children while they match (see `_children`)."""
    key = _key(want)
    for child in parent:
        if id(child) not in taken and child.tag == want.tag and (key[1] is None or _key(child) == key):
            return child
    return None


def _children(el) -> list:
    return list(el)


def _empty(el) -> bool:
    return len(el.attrib) == 0 and not (el.text or "").strip() and len(el) == 0


def _compare(desired, current, path: str, out: list[str]) -> None:
    for attr, value in desired.attrib.items():
        have = current.get(attr)
        if not _same(desired.tag, attr, have, value):
            out.append("%s@%s: %r -> %r" % (path, attr, have, value))
    for attr in OWNED_ATTRIBUTES.get(desired.tag, ()):
        if current.get(attr) is not None and desired.get(attr) is None:
            out.append("%s@%s: %r -> None" % (path, attr, current.get(attr)))
    if (desired.text or "").strip() and (desired.text or "").strip() != (current.text or "").strip():
        out.append("%s: %r -> %r" % (path, (current.text or "").strip(), desired.text.strip()))
    children = _children(current)  # held, so that the ids in `taken` stay those of these elements
    taken: set[int] = set()
    for child in desired:
        match = _find(current, child, taken)
        child_path = "%s/%s" % (path, _label(child))
        if match is None:
            if not _empty(child):
                out.append("%s: missing, would be added" % child_path)
            continue
        taken.add(id(match))
        _compare(child, match, child_path, out)
    for child in children:
        if _owned(desired.tag, child) and id(child) not in taken:
            out.append("%s/%s: not in the spec, would be removed" % (path, _label(child)))


def differences(desired_xml: str, current_xml: str) -> list[str]:
    """What would change, one line per difference; empty when the domain matches the spec."""
    desired, current = parse(desired_xml), parse(current_xml)
    out: list[str] = []
    _compare(desired, current, desired.tag, out)
    return out


def _merge_attributes(desired, current) -> None:
    for attr, value in desired.attrib.items():
        if not _same(desired.tag, attr, current.get(attr), value):
            current.set(attr, value)
    for attr in OWNED_ATTRIBUTES.get(desired.tag, ()):
        if desired.get(attr) is None and attr in current.attrib:
            del current.attrib[attr]


def _new(element, tail: str | None):
    """A copy of a desired element to put into libvirt's tree, indented like its neighbour."""
    new = copy.deepcopy(element)
    new.tail = tail
    return new


def _merge(desired, current) -> None:
    """Apply `desired` to libvirt's element `current`, in place: what the spec does not own
    (attributes, children, namespaces, text, whitespace) stays as libvirt wrote it."""
    _merge_attributes(desired, current)
    if (desired.text or "").strip():
        current.text = desired.text.strip()
    children = _children(current)  # held, so that the ids in `taken` stay those of these elements
    taken: set[int] = set()
    added = []
    for child in desired:
        match = _find(current, child, taken)
        if match is None:
            if not _empty(child):
                added.append(child)
            continue
        taken.add(id(match))
        if _kind_changed(child, match):
            current.replace(match, _new(child, match.tail))
        else:
            _merge(child, match)
    for child in children:
        if _owned(desired.tag, child) and id(child) not in taken:
            _remove(current, child)
    for element in added:
        # Next to its siblings of the same kind, so libvirt's element order is kept.
        kept = _children(current)
        same = [c for c in kept if c.tag == element.tag]
        _insert_after(current, same[-1] if same else (kept[-1] if kept else None), element)


def _insert_after(parent, after, element) -> None:
    """A copy of the desired `element` after `after` (or as `parent`'s only child), indented
    like its siblings."""
    new = _new(element, None)
    if after is None:
        parent.append(new)
        return
    new.tail = after.tail
    last = after.getnext() is None
    after.addnext(new)
    if last:  # `after` held the closing tag's indentation, which now follows the new element
        previous = after.getprevious()
        after.tail = previous.tail if previous is not None else parent.text


def _remove(parent, child) -> None:
    """Remove `child`, keeping the whitespace before its next sibling as it was."""
    previous = child.getprevious()
    if previous is not None:
        previous.tail = child.tail
    else:
        parent.text = child.tail if (parent.text or "").strip() == "" else parent.text
    child.tail = None
    parent.remove(child)


def merge(desired_xml: str, current_xml: str) -> str:
    """The XML to define: libvirt's, with the desired parts applied and owned extras removed."""
    current = parse(current_xml)
    _merge(parse(desired_xml), current)
    return serialize(current)


def firmware(xml: str) -> str:
    """The firmware kind a domain XML describes: bios, uefi, uefi+secure-boot or
    uefi+secure-boot+enrolled-keys. A change between kinds needs a new NVRAM."""
    os_el = parse(xml).find("os")
    if os_el is None:
        return "bios"
    loader = os_el.find("loader")
    if os_el.get("firmware") != "efi" and (loader is None or loader.get("type") != "pflash"):
        return "bios"
    features = {f.get("name"): f.get("enabled") == "yes" for f in os_el.findall("firmware/feature")}
    secure = features.get("secure-boot", loader is not None and loader.get("secure") == "yes")
    enrolled = features.get("enrolled-keys", False)
    return "uefi" + ("+secure-boot" if secure else "") + ("+enrolled-keys" if secure and enrolled else "")


def nvram_path(xml: str, default_dir: str = "/var/lib/libvirt/qemu/nvram") -> str | None:
    """The domain's NVRAM file: the one its XML names, else libvirt's default; None for BIOS."""
    root = parse(xml)
    if firmware(xml) == "bios":
        return None
    path = (root.findtext("os/nvram") or "").strip()
    return path or "%s/%s_VARS.fd" % (default_dir, root.findtext("name"))


def replace_os(merged_xml: str, desired_xml: str) -> str:
    """`merged_xml` with its <os> taken whole from `desired_xml`: for a firmware change, where
    libvirt's selected loader and NVRAM template of the old kind must not survive."""
    merged, desired = parse(merged_xml), parse(desired_xml)
    old = merged.find("os")
    merged.replace(old, _new(desired.find("os"), old.tail))
    return serialize(merged)


def pretty(xml: str) -> str:
    """Indented XML for diffs, one element per line."""
    if not xml:
        return ""
    root = parse(xml)
    etree.indent(root, space="  ")
    return serialize(root) + "\n"
