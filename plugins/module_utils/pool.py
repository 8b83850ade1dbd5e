# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt directory storage pools: the plan (pure) and its convergence (converge()), for
kvmlab.hypervisor.libvirt_pool and kvmlab.hypervisor.vm_storage."""

from __future__ import annotations

import os
import posixpath
import xml.etree.ElementTree as ET

from ansible_collections.kvmlab.hypervisor.plugins.module_utils.libvirt_common import (
    LIFECYCLE_OPTIONS,
    is_no_such,
    libvirt,
)

# The suboptions of a module's `pools` (documented in the kvmlab.hypervisor.storage fragment).
POOL_OPTIONS = {
    "name": {"type": "str", "required": True},
    "path": {"type": "path"},
    **LIFECYCLE_OPTIONS,
}


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


def current_state(conn, name: str) -> tuple:
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        if is_no_such(exc):
            return None, None
        raise
    xml = pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE)
    return pool, {"path": target_path(xml), "active": bool(pool.isActive()),
                  "autostart": bool(pool.autostart()), "xml": xml}


def summary(state: dict | None) -> dict:
    if state is None:
        return {"defined": False}
    return {"defined": True, "path": state["path"], "active": state["active"], "autostart": state["autostart"]}


def apply(conn, pool, state, spec: dict, actions: list[str]):
    for action in actions:
        if action == "define":
            pool = conn.storagePoolDefineXML(pool_xml(spec["name"], spec["path"]), 0)
        elif action == "redefine":
            pool = conn.storagePoolDefineXML(with_target_path(state["xml"], spec["path"]), 0)
        elif action == "build":
            pool.build(libvirt.VIR_STORAGE_POOL_BUILD_NEW)
        elif action == "stop":
            pool.destroy()
        elif action == "start":
            pool.create(0)
        elif action in ("autostart_on", "autostart_off"):
            pool.setAutostart(1 if action == "autostart_on" else 0)
        elif action == "undefine":
            pool.undefine()


def check(module, specs: list) -> None:
    """Stops the module before any change on a spec no pool can have."""
    for spec in specs:
        if spec["state"] == "present" and not spec.get("path"):
            module.fail_json(msg="pools[%s].path is required for a present pool" % spec["name"])


def converge(module, conn, specs: list) -> dict:
    """Each pool of `specs` brought to its spec (check mode: planned only): {changed, actions, diff}."""
    result = {"changed": False, "actions": {}, "diff": {"before": {}, "after": {}}}
    for spec in specs:
        name = spec["name"]
        try:
            pool, state = current_state(conn, name)
            want = dict(spec, path_exists=bool(spec.get("path")) and os.path.isdir(spec["path"]))
            actions = plan(want, state)
            result["actions"][name] = actions
            if not actions:
                continue
            result["changed"] = True
            result["diff"]["before"][name] = summary(state)
            result["diff"]["after"][name] = (
                {"defined": False} if spec["state"] == "absent"
                else {"defined": True, "path": spec["path"], "active": spec["active"], "autostart": spec["autostart"]})
            if not module.check_mode:
                apply(conn, pool, state, spec, actions)
        except libvirt.libvirtError as exc:
            module.fail_json(msg="pool %s: %s" % (name, exc), **result)
    return result
