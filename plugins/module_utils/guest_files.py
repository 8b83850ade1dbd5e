# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files of a defined guest, read from its libvirt XML, defined once: its disk images; what it
owns (its disk images and its NVRAM file, which purge and reset_nvram may delete or replace);
what it holds alone (disk images, NVRAM, TPM sockets: no two guests may share one, cdroms they
may); and everything it uses (every source file and its NVRAM). With the guard that lets a guest
delete only its own files."""

from __future__ import annotations

import os
import shutil
import time
import xml.etree.ElementTree as ET

from ansible_collections.kvmlab.hypervisor.plugins.module_utils import libvirt_common as lc
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.domain_merge import nvram_path
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.errors import KvmlabError


def _disks(root: ET.Element) -> list[str]:
    return [s.get("file") for s in root.findall("devices/disk[@device='disk']/source") if s.get("file")]


def disk_files(xml: str) -> list[str]:
    """The disk images of a guest (device disk, file sources), in the XML's order."""
    return _disks(ET.fromstring(xml))


def owned_files(xml: str) -> list[str]:
    """What purge deletes: the disk images, and the NVRAM file when it exists."""
    nvram = nvram_path(xml)
    return disk_files(xml) + ([nvram] if nvram and os.path.exists(nvram) else [])


def exclusive_files(root: ET.Element) -> list[str]:
    """What no other guest may use: disk images, the NVRAM file its XML names, TPM sockets."""
    files = _disks(root) + [el.text for el in root.findall("os/nvram") if el.text]
    return files + [el.get("path") for el in root.findall("devices/tpm/backend/source") if el.get("path")]


def used_files(xml: str) -> set[str]:
    """Every file a guest's definition reads or writes."""
    root = ET.fromstring(xml)
    return {el.get("file") for el in root.iter("source") if el.get("file")} | {el.text for el in root.iter("nvram")}


def guard_owned(conn, name: str, paths: list, owned: list, what: str) -> None:
    """Raise, before any change, unless every path is one of `owned` (the files the guest's spec
    names) and no other defined guest uses it."""
    owned_set = set(owned)
    problems = ["%s is not in owned_paths (%s)" % (p, ", ".join(sorted(owned_set)) or "empty")
                for p in paths if p not in owned_set]
    for other in conn.listAllDomains(0):
        if other.name() == name:
            continue
        used = used_files(other.XMLDesc(lc.libvirt.VIR_DOMAIN_XML_INACTIVE))
        problems += ["%s is used by guest %s too" % (p, other.name()) for p in paths if p in used]
    if problems:
        raise KvmlabError("guest %s: %s would touch files that are not only its own: %s. Nothing was deleted or "
                          "changed; list the guest's own files in owned_paths, or remove the file by hand."
                          % (name, what, "; ".join(problems)))


def delete_disks(conn, paths: list) -> list:
    """Only for purge: delete the disk images, through libvirt when a pool holds them."""
    deleted = []
    for path in paths:
        try:
            conn.storageVolLookupByPath(path).delete(0)
        except lc.libvirt.libvirtError:
            if not os.path.exists(path):
                continue
            os.remove(path)
        deleted.append(path)
    return deleted


def backup_nvram(path: str) -> str | None:
    """A timestamped copy of an NVRAM file beside it, before it is replaced."""
    if not path or not os.path.exists(path):
        return None
    backup = "%s.%s.bak" % (path, time.strftime("%Y%m%dT%H%M%S"))
    shutil.copy2(path, backup)
    return backup
