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
  - O(directories) is deprecated - directories are made by M(kvmlab.hypervisor.vm_storage), which
    also converges pools and volumes in the same call.
author:
  - kvmlab developers (@kvmlab)
extends_documentation_fragment:
  - kvmlab.hypervisor.libvirt
  - kvmlab.hypervisor.storage.volumes
options:
  volumes:
    default: []
  directories:
    description:
      - Absolute paths of directories to make, with their parents, when missing (mode 0755, owned
        by root). One that exists is left as it is; a path that exists but is no directory is an
        error, reported before any change.
      - Deprecated, to be removed in 1.0.0 - a volume module that also makes directories is named
        for half its job. Use M(kvmlab.hypervisor.vm_storage)'s O(kvmlab.hypervisor.vm_storage#module:directories),
        which also sets owner, group and mode.
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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import directories as dirs
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import volume as volumes
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.libvirt_common import connect, run_module


def core(module: AnsibleModule) -> dict:
    result = dict(volumes.empty_result(), directories=[])
    try:  # the deprecated directories: missing ones made (root, 0755), existing ones untouched
        made = dirs.plan([{"path": path} for path in module.params["directories"]])
    except dirs.DirectoryError as exc:
        module.fail_json(msg=str(exc))
    result["directories"] = [path for path, _current, _want in made]
    result["diff"]["before"], result["diff"]["after"] = dirs.diff(made)
    result["changed"] = bool(made)
    specs = module.params["volumes"]
    conn = connect(module, module.params["uri"], "would create the volumes") if specs else None
    plans = volumes.plan_all(module, conn, specs)
    if not module.check_mode:
        try:
            dirs.apply(made)
        except dirs.DirectoryError as exc:
            module.fail_json(msg=str(exc))
    volumes.converge(module, plans, result)
    return result


def main() -> None:
    run_module(core, {
        "directories": {"type": "list", "elements": "path", "default": [],
                        "removed_in_version": "1.0.0", "removed_from_collection": "kvmlab.hypervisor"},
        "volumes": volumes.VOLUMES_ARGUMENT,
    }, prepare=volumes.mask_sources)


if __name__ == "__main__":
    main()
