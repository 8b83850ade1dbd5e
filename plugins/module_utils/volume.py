# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt storage volumes: the plan of one (pure) and the convergence of a list, for
kvmlab.hypervisor.libvirt_volume and kvmlab.hypervisor.vm_storage."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

from ansible_collections.kvmlab.hypervisor.plugins.module_utils import image
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.libvirt_common import is_no_such, libvirt
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.spec_values import parse_size

# The suboptions of a module's `volumes` (documented in the kvmlab.hypervisor.storage fragment).
VOLUME_OPTIONS = {
    "pool": {"type": "str", "required": True},
    "name": {"type": "str", "required": True},
    "capacity": {"type": "str", "required": True},
    "format": {"type": "str", "choices": ["qcow2", "raw"], "default": "qcow2"},
    "preallocation": {"type": "str", "choices": ["metadata", "off"], "default": "metadata"},
    "backing_file": {"type": "path"},
    "backing_format": {"type": "str", "choices": ["qcow2", "raw"], "default": "qcow2"},
    "allow_grow": {"type": "bool", "default": False},
    "source": {
        "type": "dict",
        "options": {
            "url": {"type": "str"},
            "path": {"type": "str"},
            "checksum": {"type": "str"},
            "format": {"type": "str", "choices": list(image.FORMATS)},
            "compression": {"type": "str", "choices": list(image.COMPRESSIONS)},
            "timeout": {"type": "int", "default": image.DEFAULT_TIMEOUT},
            "deadline": {"type": "int", "default": image.DEFAULT_DEADLINE},
        },
    },
}
VOLUMES_ARGUMENT = {"type": "list", "elements": "dict", "default": [], "options": VOLUME_OPTIONS}


def empty_result() -> dict:
    """What converge() fills in: changed, and per volume its actions, paths, sources, removed_partial, diff."""
    return {"changed": False, "actions": {}, "paths": {}, "sources": {}, "removed_partial": {},
            "diff": {"before": {}, "after": {}}}


def mask_sources(module) -> None:
    """A source URL's user and password: masked in everything the module returns."""
    for spec in module.params["volumes"]:
        module.no_log_values.update(image.secrets(spec.get("source")))


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


def predicted_path(pool, spec: dict) -> str:
    """Where a volume would be created (check mode); the storage role defines missing pools first."""
    if pool is None:
        return "/%s/%s" % (spec["pool"], spec["name"])  # the pool is not defined yet: a stand-in
    return os.path.join(ET.fromstring(pool.XMLDesc(0)).findtext("target/path") or "/", spec["name"])


def lookup_pool(module, conn, name: str, cache: dict):
    if name not in cache:
        try:
            pool = conn.storagePoolLookupByName(name)
        except libvirt.libvirtError as exc:
            if module.check_mode and is_no_such(exc):
                cache[name] = None  # the storage role would define it first
                return None
            module.fail_json(msg="pool %s: %s" % (name, exc))
        if not pool.isActive():
            if module.check_mode:
                cache[name] = None
                return None
            module.fail_json(msg="pool %s is not active; start it (kvmlab.hypervisor.libvirt_pool) first" % name)
        cache[name] = pool
        cache[name, "refreshed"] = False
    return cache[name]


def existing(module, pool, spec: dict, key: str, cache: dict) -> tuple:
    """The volume and its {capacity, format}, or (None, None) when it does not exist.

    A volume libvirt does not list may have been copied in by hand: the pool is rescanned once,
    and only then (a converged host never pays for a rescan).
    """
    if pool is None:
        return None, None
    for attempt in (1, 2):
        try:
            vol = pool.storageVolLookupByName(spec["name"])
            _type, cap, _alloc = vol.info()
            return vol, {"capacity": cap, "format": volume_format(vol.XMLDesc(0))}
        except libvirt.libvirtError as exc:
            if not is_no_such(exc):
                module.fail_json(msg="volume %s: %s" % (key, exc))
        if attempt == 1 and not cache[spec["pool"], "refreshed"]:
            pool.refresh(0)
            cache[spec["pool"], "refreshed"] = True
        else:
            break
    return None, None


def create(pool, spec: dict, capacity: int):
    flags = 0
    if spec["format"] == "qcow2" and spec["preallocation"] == "metadata" and not spec.get("backing_file"):
        flags |= libvirt.VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA
    return pool.createXML(volume_xml(spec, capacity), flags)


def source_check(module, spec: dict, key: str) -> None:
    source = spec.get("source")
    if source is None:
        return
    errors = image.source_errors(source, "volumes[%s].source" % key, spec["format"])
    if spec.get("backing_file"):
        errors.append("volumes[%s].source: a volume made from a source has no backing_file; give one or the other."
                      % key)
    if errors:
        module.fail_json(msg=" ".join(errors))


def from_source(module, pool, spec: dict, capacity: int, result: dict):
    """The volume made from its source in the pool's directory, then seen by libvirt."""
    key = "%s/%s" % (spec["pool"], spec["name"])
    try:
        placed = image.place(spec["source"], predicted_path(pool, spec), capacity, spec["format"])
    except (image.ImageError, OSError) as exc:  # OSError: the pool's directory (no temporary file is left)
        module.fail_json(msg="volumes[%s].source: %s" % (key, exc), **result)
    result["sources"][key] = {"source": image.describe(spec["source"]), "checksum": placed["checksum"],
                              "compression": placed["compression"]}
    pool.refresh(0)  # as for an image copied in by hand: libvirt lists it after a rescan
    return pool.storageVolLookupByName(spec["name"])


def check_all(module, specs: list) -> list:
    """Each spec's capacity in bytes; a capacity or source no volume can have stops the module."""
    capacities = []
    for spec in specs:
        key = "%s/%s" % (spec["pool"], spec["name"])
        try:
            capacities.append(parse_size(spec["capacity"]))
        except ValueError as exc:
            module.fail_json(msg="volumes[%s].capacity: %s" % (key, exc))
        source_check(module, spec, key)
    return capacities


def plan_all(module, conn, specs: list) -> list:
    """Every volume planned before any is changed, so a refused shrink stops the whole list."""
    pools: dict = {}
    plans = []
    capacities = check_all(module, specs)
    for index, spec in enumerate(specs):
        capacity = capacities[index]
        key = "%s/%s" % (spec["pool"], spec["name"])
        pool = lookup_pool(module, conn, spec["pool"], pools)
        vol, current = existing(module, pool, spec, key, pools)
        action, problem = plan(spec, capacity, current)
        if problem and problem[0] == "error":
            module.fail_json(msg="volumes[%s]: %s" % (key, problem[1]))
        plans.append((spec, key, capacity, pool, vol, current, action, problem))
    return plans


def remove_stale_parts(module, plans: list, result: dict) -> None:
    """The temporary files that killed runs left for the volumes with a source (image.stale_parts)."""
    for spec, key, _capacity, pool, _vol, _current, _planned, _problem in plans:
        if spec.get("source") is None or pool is None:
            continue
        directory = os.path.dirname(predicted_path(pool, spec))
        try:
            removed = image.stale_parts(directory, spec["name"], remove=not module.check_mode)
        except OSError as exc:
            module.fail_json(msg="volumes[%s]: cannot remove the partial files of an interrupted run in %s: %s"
                             % (key, directory, exc), **result)
        if removed:
            result["changed"] = True
            result["removed_partial"][key] = removed
            result["diff"]["before"].setdefault(key, {})["partial_files"] = removed
            result["diff"]["after"].setdefault(key, {})["partial_files"] = []
            module.warn("volumes[%s]: %s the partial files an interrupted run left: %s" % (
                key, "would remove" if module.check_mode else "removed", ", ".join(removed)))


def converge(module, plans: list, result: dict) -> None:
    """The planned volumes created or grown (check mode: predicted), into `result` (its changed,
    actions, paths, sources, removed_partial and diff)."""
    remove_stale_parts(module, plans, result)
    for spec, key, capacity, pool, vol, current, planned, problem in plans:
        if problem:
            module.warn(problem[1])
        if vol is not None:
            result["paths"][key] = vol.path()
        if planned is None:
            continue
        result["changed"] = True
        action = "create_from_source" if planned == "create" and spec.get("source") else planned
        result["actions"][key] = action
        result["diff"]["before"].setdefault(key, {}).update(
            {"capacity": current["capacity"]} if current else {"exists": False})
        result["diff"]["after"].setdefault(key, {}).update({"capacity": capacity, "format": spec["format"]})
        if action == "create_from_source":
            result["diff"]["after"][key]["source"] = image.describe(spec["source"])
        if module.check_mode:
            if action != "grow":
                result["paths"][key] = predicted_path(pool, spec)
            continue
        try:
            if action == "create_from_source":
                result["paths"][key] = from_source(module, pool, spec, capacity, result).path()
            elif action == "create":
                result["paths"][key] = create(pool, spec, capacity).path()
            else:
                vol.resize(capacity, 0)
        except libvirt.libvirtError as exc:
            module.fail_json(msg="volume %s: %s" % (key, exc), **result)
