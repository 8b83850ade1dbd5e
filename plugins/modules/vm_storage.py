#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vm_storage
short_description: Converge a hypervisor's VM storage - btrfs subvolume, directories, pools, volumes - in one call
version_added: 0.2.0
description:
  - One remote call for what a hypervisor's VM storage needs, in this order - the btrfs subvolume
    that holds it (made, written to C(/etc/fstab), mounted, nodatacow), the directories
    (made, their owner, group and mode repaired), the libvirt directory pools (as
    M(kvmlab.hypervisor.libvirt_pool) converges them) and the volumes (as
    M(kvmlab.hypervisor.libvirt_volume) creates them, never recreated or shrunk).
  - Every subvolume, directory, pool and volume spec is checked before anything changes (a path that is no
    directory, an unknown owner, a capacity or source no volume can have), so a bad entry stops the
    call with nothing done. A volume that would shrink is refused before any volume is touched. A
    libvirt error on one pool or volume fails the call there.
  - The storage role calls it for the host's directories, pools and volumes, the guests role for
    the guests' missing disks and shared directories.
  - A converged host calls no write API and reports no change.
author:
  - kvmlab developers (@kvmlab)
extends_documentation_fragment:
  - kvmlab.hypervisor.libvirt
  - kvmlab.hypervisor.storage.directories
  - kvmlab.hypervisor.storage.pools
  - kvmlab.hypervisor.storage.volumes
options:
  subvolume:
    description:
      - A btrfs subvolume at the top level of a btrfs filesystem, mounted through C(/etc/fstab) where
        the VM storage lives. Left out, nothing of btrfs is done or read.
      - The subvolume is made when missing and never deleted or changed. Its fstab line, C(UUID=<the
        filesystem> <mount_point> btrfs subvol=<name>[,<mount_options>] 0 0), is added or, where a
        line for the mount point says something else, rewritten in place; every other line is kept
        byte for byte. It is mounted when it is not, and remounted when its line changed.
      - A filesystem that is not btrfs, or another filesystem or subvolume mounted at the mount
        point, is refused before any change.
      - Spaces and backslashes in the mount point are written as fstab's octal escapes
        (C(\040)); control characters are refused.
    type: dict
    suboptions:
      name:
        description: Subvolume name, such as C(@vm) - no slashes, blanks, commas, quotes or backslashes.
        type: str
        required: true
      device:
        description: A block device of the btrfs filesystem. Empty - the filesystem mounted at C(/).
        type: str
        default: ""
      mount_point:
        description: Where the subvolume is mounted, an absolute path; made when missing.
        type: path
        required: true
      mount_options:
        description: Mount options after C(subvol=<name>), one per item, such as C(noatime).
        type: list
        elements: str
        default: []
      nodatacow:
        description:
          - Sets the C(C) attribute (chattr +C) on the mount point, so images created there later do
            not use copy-on-write, which fragments qcow2 images badly.
          - Files already there keep copy-on-write (btrfs cannot change it for a file with data); they
            are returned in RV(subvolume.cow_files) with a warning saying how to convert one.
        type: bool
        default: true
  directories:
    default: []
  pools:
    default: []
  volumes:
    default: []
attributes:
  check_mode:
    support: full
    description: Reports what it would make, repair, define or create, and changes nothing.
  diff_mode:
    support: full
    description:
      - Shows the subvolume made, its fstab line, mount and nodatacow attribute, each changed
        directory's owner, group and mode, each changed pool's path, active and autostart state, and
        each created or grown volume's capacity, before and after - keyed C(subvolume <name>),
        C(fstab <mount point>), C(mount <mount point>), C(nodatacow <mount point>),
        C(directory <path>), C(pool <name>) and C(volume <pool>/<name>).
"""

EXAMPLES = r"""
- name: The example workstation's VM storage
  kvmlab.hypervisor.vm_storage:
    subvolume: {name: "@vm", device: /dev/nvme0n1p2, mount_point: /mnt/vm}
    directories:
      - {path: /mnt/vm/iso, owner: root, group: root, mode: "0755"}
      - {path: /mnt/vm/tpm, owner: tss, group: tss, mode: "0750"}
    pools:
      - {name: vm, path: /mnt/vm}
      - {name: iso, path: /mnt/vm/iso}
    volumes:
      - {pool: vm, name: win11.qcow2, capacity: 40G}
"""

RETURN = r"""
subvolume:
  description: What was done for the subvolume (or would be, in check mode); empty without O(subvolume).
  returned: always
  type: dict
  contains:
    actions:
      description: Some of C(create), C(fstab), C(mount), C(remount) and C(nodatacow), in the order done.
      type: list
      elements: str
      sample: [create, fstab, mount, nodatacow]
    uuid:
      description: The UUID of the btrfs filesystem, as the fstab line names it.
      type: str
      sample: 0b7e2c1a-5f0e-4b7a-9a57-3c1e2d4f5a6b
    cow_files:
      description: Regular files under the mount point that still use copy-on-write.
      type: list
      elements: str
      sample: [/mnt/vm/old.qcow2]
directories:
  description: The directories made or repaired (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/mnt/vm/tpm]
pools:
  description: What was done (or would be done in check mode), per pool.
  returned: always
  type: dict
  sample: {iso: [define, start, autostart_on], vm: []}
volumes:
  description:
    - For the volumes, what M(kvmlab.hypervisor.libvirt_volume) returns for them -
      RV(kvmlab.hypervisor.libvirt_volume#module:actions),
      RV(kvmlab.hypervisor.libvirt_volume#module:paths),
      RV(kvmlab.hypervisor.libvirt_volume#module:sources) and
      RV(kvmlab.hypervisor.libvirt_volume#module:removed_partial).
  returned: always
  type: dict
  sample: {actions: {vm/win11.qcow2: create}, paths: {vm/win11.qcow2: /mnt/vm/win11.qcow2}, sources: {},
           removed_partial: {}}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import btrfs
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import directories as dirs
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import pool as pools
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import volume as volumes
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.libvirt_common import connect, run_module


def keyed(prefix: str, section: dict) -> dict:
    return {"%s %s" % (prefix, key): value for key, value in section.items()}


def core(module: AnsibleModule) -> dict:
    params = module.params
    subvolume = params["subvolume"]
    try:
        if subvolume:
            btrfs.validate(subvolume)
        made = dirs.plan(params["directories"], module.check_mode)
    except (btrfs.BtrfsError, dirs.DirectoryError) as exc:
        module.fail_json(msg=str(exc))
    pools.check(module, params["pools"])
    volumes.check_all(module, params["volumes"])
    result = {"changed": False, "subvolume": {}, "pools": {}, "volumes": {}, "diff": {"before": {}, "after": {}}}
    if subvolume:
        try:
            done = btrfs.converge(module, subvolume)
        except btrfs.BtrfsError as exc:
            module.fail_json(msg=str(exc), **exc.details)
        result["subvolume"] = {key: done[key] for key in ("actions", "uuid", "cow_files")}
        result["changed"] = bool(done["actions"])
        result["diff"] = done["diff"]
        if done["actions"] and not module.check_mode:
            made = dirs.plan(params["directories"], False)  # the mount may have changed what is there
    before, after = dirs.diff(made)
    result["directories"] = [path for path, _current, _want in made]
    result["changed"] |= bool(made)
    result["diff"]["before"].update(keyed("directory", before))
    result["diff"]["after"].update(keyed("directory", after))
    # Connected only now, so that a fresh host's check run (libvirt only predicted) still reports
    # the subvolume and the directories with their diff.
    conn = None
    if params["pools"] or params["volumes"]:
        conn = connect(module, params["uri"], "would converge the storage pools and volumes", partial=result)
    if not module.check_mode:
        try:
            dirs.apply(made)
        except dirs.DirectoryError as exc:
            module.fail_json(msg=str(exc), **result)
    if params["pools"]:
        done = pools.converge(module, conn, params["pools"])
        result["pools"] = done["actions"]
        result["changed"] |= done["changed"]
        for side in ("before", "after"):
            result["diff"][side].update(keyed("pool", done["diff"][side]))
    # Planned after the pools, so a pool defined just now holds its volumes; in check mode a pool
    # that would be defined first stands in (libvirt_volume's prediction).
    plans = volumes.plan_all(module, conn, params["volumes"])
    done = volumes.empty_result()
    volumes.converge(module, plans, done)
    result["volumes"] = {key: done[key] for key in ("actions", "paths", "sources", "removed_partial")}
    result["changed"] |= done["changed"]
    for side in ("before", "after"):
        result["diff"][side].update(keyed("volume", done["diff"][side]))
    return result


def main() -> None:
    run_module(core, {
        "subvolume": {"type": "dict", "options": btrfs.SUBVOLUME_OPTIONS},
        "directories": {"type": "list", "elements": "dict", "default": [], "options": dirs.DIRECTORY_OPTIONS},
        "pools": {"type": "list", "elements": "dict", "default": [], "options": pools.POOL_OPTIONS},
        "volumes": volumes.VOLUMES_ARGUMENT,
    }, prepare=volumes.mask_sources)


if __name__ == "__main__":
    main()
