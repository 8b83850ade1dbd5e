# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure planning for libvirt storage volumes (kvmlab.hypervisor.libvirt_volume)."""

from __future__ import annotations

import xml.etree.ElementTree as ET


def volume_xml(spec: dict, capacity: int) -> str:
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = spec["name"]
    ET.SubElement(vol, "capacity", unit="bytes").text = str(capacity)
    ET.SubElement(vol, "allocation", unit="bytes").text = "0"
    target = ET.SubElement(vol, "target")
    ET.SubElement(target, "format", type=spec["format"])
    if spec["format"] == "qcow2":
        ET.SubElement(target, "compat").text = "1.1"
    if spec.get("backing_file"):
        backing = ET.SubElement(vol, "backingStore")
        ET.SubElement(backing, "path").text = spec["backing_file"]
        ET.SubElement(backing, "format", type=spec.get("backing_format") or "qcow2")
    return ET.tostring(vol, encoding="unicode")


def volume_format(xml: str) -> str:
    node = ET.fromstring(xml).find("target/format")
    return node.get("type", "") if node is not None else ""


def plan(spec: dict, capacity: int, current: dict | None) -> tuple:
    """(action, problem) for one volume.

    action: "create", "grow" or None. problem: a message when the spec asks for something the
    module refuses (shrinking: an error; growing without allow_grow, another format: warnings).
    current: None when the volume does not exist, else {capacity, format}.
    """
    if current is None:
        return "create", None
    name = "%s/%s" % (spec["pool"], spec["name"])
    if capacity < current["capacity"]:
        return None, ("error", "%s is %d bytes; capacity %s (%d bytes) would shrink it. Shrinking loses "
                      "data and is refused: set capacity to at least the current size."
                      % (name, current["capacity"], spec["capacity"], capacity))
    problem = None
    if current["format"] and current["format"] != spec["format"]:
        problem = ("warning", "%s is %s, the spec says %s; an existing volume is never recreated."
                   % (name, current["format"], spec["format"]))
    if capacity > current["capacity"]:
        if spec.get("allow_grow"):
            return "grow", problem
        return None, ("warning", "%s is %d bytes, the spec asks for %d; set allow_grow: true to grow it."
                      % (name, current["capacity"], capacity))
    return None, problem
