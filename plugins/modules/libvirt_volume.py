#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: libvirt_volume
short_description: Create libvirt storage volumes once, never recreate or shrink them
version_added: 0.1.0
description:
  - Creates each listed volume that does not exist yet in its pool (qcow2 with compat 1.1 and
    metadata preallocation by default, optionally on a backing file).
  - An existing volume is never recreated, whatever its format. A capacity below its current size
    is an error, reported before any volume is touched; growing needs O(volumes[].allow_grow).
  - A volume libvirt does not list is looked for again after a rescan of its pool, so disk
    images copied in by hand count as existing; a converged host is never rescanned.
  - A volume that does not exist yet can get its first content from a prebuilt image
    (O(volumes[].source)) - downloaded or copied once to a temporary file in the pool's directory,
    its checksum verified as downloaded, decompressed, its format checked and grown to
    O(volumes[].capacity) with C(qemu-img), and only then moved into place; the pool is rescanned
    so libvirt sees it. On any failure nothing is left behind. An existing volume ignores its
    source entirely (nothing is downloaded or checked).
  - A source is bounded in bytes and time. Nothing written (download or decompressed image) grows
    past the volume's capacity plus 1/256 and 64 MiB (room for qcow2 metadata); a larger known size
    (Content-Length, the local file's size, the stated size of the image in a 7z archive) is
    refused before anything is written; the pool's filesystem keeps 1 GiB free (a twentieth of a
    smaller one) for the other disks, checked before and while writing.
    O(volumes[].source.timeout) bounds each wait for the server, O(volumes[].source.deadline)
    the whole preparation, C(qemu-img) and C(7z) included.
  - The temporary files are C(.<volume name>.<8 characters>.download.part) and C(.image.part) in
    the pool's directory, each locked (flock) by the run that writes it. A run killed meanwhile
    leaves them behind; the next run for that volume removes the unlocked ones, reports them in
    RV(removed_partial) and warns (check mode reports them only).
  - Redirects are followed to C(http) and C(https) only (at most 10); the body is taken as served
    (a C(Content-Encoding) is not undone, as the checksum is of the file as published). A URL's user
    and password are redacted in every result, diff, warning and error. An encrypted image, and a
    path that is not a regular file (a device or FIFO), are refused.
  - It also makes the guests' missing directories (O(directories), such as virtiofs shares), so
    one call prepares all guests' storage. An existing directory keeps its owner and mode.
author:
  - kvmlab developers (@kvmlab)
extends_documentation_fragment:
  - kvmlab.hypervisor.libvirt
options:
  volumes:
    description: The volumes.
    type: list
    elements: dict
    default: []
    suboptions:
      pool:
        description: Name of the pool that holds the volume.
        type: str
        required: true
      name:
        description: File name of the volume in the pool.
        type: str
        required: true
      capacity:
        description: Virtual size, such as C(40G) or a number of bytes (binary units).
        type: str
        required: true
      format:
        description: Image format.
        type: str
        choices: [qcow2, raw]
        default: qcow2
      preallocation:
        description: C(metadata) preallocates qcow2 metadata (faster first writes); C(off) does not.
        type: str
        choices: [metadata, "off"]
        default: metadata
      backing_file:
        description: Absolute path of a backing image (qcow2 only).
        type: path
      backing_format:
        description: Format of O(volumes[].backing_file).
        type: str
        choices: [qcow2, raw]
        default: qcow2
      allow_grow:
        description: Grow an existing volume that is smaller than O(volumes[].capacity).
        type: bool
        default: false
      source:
        description:
          - The first content of a volume that does not exist yet - a prebuilt image, such as Arch's
            C(Arch-Linux-x86_64-basic.qcow2) or Kali's C(kali-linux-2025.2-qemu-amd64.7z). Give
            either O(volumes[].source.url) or O(volumes[].source.path), and always
            O(volumes[].source.checksum).
          - Needs C(qemu-img) on the host, and C(7z) for 7z archives (Debian 13 and Arch - C(7zip);
            Debian 12 - C(p7zip-full)).
          - Not with O(volumes[].backing_file). An image whose virtual size is above
            O(volumes[].capacity) is an error (never shrunk); a smaller one is grown.
        type: dict
        suboptions:
          url:
            description:
              - An C(http://) or C(https://) URL, taken verbatim (spaces and non-ASCII letters are
                percent-encoded for the request).
            type: str
          path:
            description: An absolute path of a local image file on the host (copied, never moved).
            type: str
          checksum:
            description:
              - The checksum of the file as downloaded (for an archive, of the archive, as the
                distributions publish it) - C(sha256:<64 hex digits>) or C(sha512:<128 hex digits>).
                Required.
              - Verified before the image becomes the volume; a mismatch is an error naming both sums.
            type: str
          format:
            description:
              - The image's format once decompressed, checked against C(qemu-img info); default
                O(volumes[].format), which it must equal.
            type: str
            choices: [qcow2, raw]
          compression:
            description:
              - How the download is compressed; default from the URL's or path's suffix (C(.xz),
                C(.gz), C(.bz2), C(.7z); anything else is C(none)).
              - A 7z archive must hold exactly one disk image (C(.qcow2), C(.qcow), C(.img) or C(.raw)).
            type: str
            choices: [none, xz, gz, bz2, 7z]
          timeout:
            description: Seconds the download may wait for the server at each step.
            type: int
            default: 60
          deadline:
            description:
              - Seconds the whole preparation may take - download, decompression and C(qemu-img)
                together. When it passes, the task fails naming the volume and nothing is kept.
            type: int
            default: 3600
  directories:
    description:
      - Absolute paths of directories to make, with their parents, when missing (mode 0755, owned
        by root). One that exists is left as it is; a path that exists but is no directory is an
        error, reported before any change.
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    support: full
    description: Reports what it would create or grow and calls no write API.
  diff_mode:
    support: full
    description: Shows each created or grown volume's capacity before and after (and its source).
"""

EXAMPLES = r"""
- name: win11's system disk, as on the example workstation
  kvmlab.hypervisor.libvirt_volume:
    volumes:
      - {pool: vm, name: win11.qcow2, capacity: 40G}

- name: Arch's prebuilt image as the first content of arch.qcow2, grown to 40G
  kvmlab.hypervisor.libvirt_volume:
    volumes:
      - pool: vm
        name: arch.qcow2
        capacity: 40G
        source:
          url: https://geo.mirror.pkgbuild.com/images/latest/Arch-Linux-x86_64-basic.qcow2
          checksum: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
"""

RETURN = r"""
directories:
  description: The directories made (or that would be made in check mode).
  returned: always
  type: list
  elements: str
  sample: [/srv/share]
actions:
  description: What was done (or would be done in check mode) per pool/volume.
  returned: always
  type: dict
  sample: {vm/win11.qcow2: create, vm/arch.qcow2: create_from_source}
sources:
  description: Per volume made from its source - the URL or path, the checksum verified and the compression.
  returned: always
  type: dict
  sample: {vm/arch.qcow2: {source: /mnt/vm/iso/arch.qcow2, checksum: "sha256:0123...", compression: none}}
removed_partial:
  description:
    - The temporary files of killed runs removed (or that would be, in check mode), per volume.
  returned: always
  type: dict
  sample: {vm/arch.qcow2: [/mnt/vm/.arch.qcow2.k3j_x9aq.download.part]}
paths:
  description: The path of each listed volume that exists (or would, in check mode).
  returned: always
  type: dict
  sample: {vm/win11.qcow2: /mnt/vm/win11.qcow2}
"""

import os
import xml.etree.ElementTree as ET

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import image
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import volume as volplan
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.libvirt_common import (
    URI_OPTION,
    connect,
    is_no_such,
    libvirt,
)
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.spec_values import parse_size


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
            return vol, {"capacity": cap, "format": volplan.volume_format(vol.XMLDesc(0))}
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
    return pool.createXML(volplan.volume_xml(spec, capacity), flags)


def directories(module: AnsibleModule) -> tuple[list, dict]:
    """The missing directories, checked before any change, and the result that starts with them."""
    missing = []
    for path in module.params["directories"]:
        if not os.path.isabs(path):
            module.fail_json(msg="directories: %r is not an absolute path." % path)
        if os.path.isdir(path):
            continue
        if os.path.lexists(path):
            module.fail_json(msg="directories: %s exists but is not a directory; move it away." % path)
        missing.append(path)
    result = {"changed": bool(missing), "actions": {}, "paths": {}, "directories": missing,
              "diff": {"before": {path: {"exists": False} for path in missing},
                       "after": {path: {"directory": True} for path in missing}}}
    return missing, result


def source_check(module: AnsibleModule, spec: dict, key: str) -> None:
    source = spec.get("source")
    if source is None:
        return
    errors = image.source_errors(source, "volumes[%s].source" % key, spec["format"])
    if spec.get("backing_file"):
        errors.append("volumes[%s].source: a volume made from a source has no backing_file; give one or the other."
                      % key)
    if errors:
        module.fail_json(msg=" ".join(errors))


def from_source(module: AnsibleModule, pool, spec: dict, capacity: int, result: dict):
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


def plan_volumes(module: AnsibleModule) -> list:
    """Every volume planned before any is changed, so a refused shrink stops the whole list."""
    if not module.params["volumes"]:
        return []
    conn = connect(module, module.params["uri"], "would create the volumes")
    pools: dict = {}
    plans = []
    for spec in module.params["volumes"]:
        key = "%s/%s" % (spec["pool"], spec["name"])
        try:
            capacity = parse_size(spec["capacity"])
        except ValueError as exc:
            module.fail_json(msg="volumes[%s].capacity: %s" % (key, exc))
        source_check(module, spec, key)
        pool = lookup_pool(module, conn, spec["pool"], pools)
        vol, current = existing(module, pool, spec, key, pools)
        action, problem = volplan.plan(spec, capacity, current)
        if problem and problem[0] == "error":
            module.fail_json(msg="volumes[%s]: %s" % (key, problem[1]))
        plans.append((spec, key, capacity, pool, vol, current, action, problem))
    return plans


def remove_stale_parts(module: AnsibleModule, plans: list, result: dict) -> None:
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


def core(module: AnsibleModule) -> dict:
    missing, result = directories(module)
    result["sources"] = {}
    result["removed_partial"] = {}
    plans = plan_volumes(module)
    make_directories(module, missing)
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
    return result


def make_directories(module: AnsibleModule, missing: list) -> None:
    if module.check_mode:
        return
    for path in missing:
        try:
            os.makedirs(path, mode=0o755, exist_ok=True)
        except OSError as exc:
            module.fail_json(msg="directories: cannot make %s: %s" % (path, exc))


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "directories": {"type": "list", "elements": "path", "default": []},
            "volumes": {
                "type": "list", "elements": "dict", "default": [],
                "options": {
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
                },
            },
            **URI_OPTION,
        },
        supports_check_mode=True,
    )
    for spec in module.params["volumes"]:  # a URL's credentials: masked in everything returned
        module.no_log_values.update(image.secrets(spec.get("source")))
    module.exit_json(**core(module))


if __name__ == "__main__":
    main()
