# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure planning for libvirt directory storage pools (kvmlab.hypervisor.libvirt_pool)."""

from __future__ import annotations

import posixpath
import xml.etree.ElementTree as ET


def pool_xml(name: str, path: str) -> str:
    pool = ET.Element("pool", type="dir")
    ET.SubElement(pool, "name").text = name
    target = ET.SubElement(pool, "target")
    ET.SubElement(target, "path").text = path
    return ET.tostring(pool, encoding="unicode")


def target_path(xml: str) -> str:
    return ET.fromstring(xml).findtext("target/path", default="")


def with_target_path(xml: str, path: str) -> str:
    """The pool's XML with only its target path replaced (uuid and the rest kept)."""
    root = ET.fromstring(xml)
    target = root.find("target")
    if target is None:
        target = ET.SubElement(root, "target")
    node = target.find("path")
    if node is None:
        node = ET.SubElement(target, "path")
    node.text = path
    return ET.tostring(root, encoding="unicode")


def plan(spec: dict, current: dict | None) -> list[str]:
    """Actions that bring one pool from `current` to `spec`, in order.

    current: None when the pool is not defined, else {path, active, autostart, path_exists}.
    Actions: define, redefine, build, stop, start, autostart_on, autostart_off, undefine.
    """
    if spec.get("state", "present") == "absent":
        if current is None:
            return []
        return (["stop"] if current["active"] else []) + ["undefine"]
    want_path = posixpath.normpath(spec["path"])
    if current is None:
        actions = ["define"]
        if not spec.get("path_exists", False):
            actions.append("build")
        if spec.get("active", True):
            actions.append("start")
        if spec.get("autostart", True):
            actions.append("autostart_on")
        return actions
    actions = []
    moved = posixpath.normpath(current["path"]) != want_path
    if moved:
        actions.append("redefine")
        if current["active"]:
            actions.append("stop")  # a dir pool's new path applies at the next start
    if not spec.get("path_exists", False):
        actions.append("build")
    if spec.get("active", True) and (moved or not current["active"]):
        actions.append("start")
    elif not spec.get("active", True) and current["active"]:
        actions.append("stop")
    if spec.get("autostart", True) != current["autostart"]:
        actions.append("autostart_on" if spec.get("autostart", True) else "autostart_off")
    return actions
