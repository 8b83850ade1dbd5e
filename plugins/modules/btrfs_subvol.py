#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: btrfs_subvol
short_description: Make sure a btrfs filesystem has a subvolume at its top level
version_added: 0.1.0
description:
  - Creates the subvolume O(name) directly under the top level (subvolid 5) of the btrfs
    filesystem on O(device) when it is missing. Never deletes or changes an existing one.
  - When the subvolume is already mounted somewhere it asks nothing more. Otherwise it mounts the
    top level on a private temporary directory (read-only in check mode), looks, creates the
    subvolume if needed, and unmounts.
  - Written because C(community.general.btrfs_subvolume) cannot run in check mode on a
    filesystem that is not mounted (a fresh host, or a VM mount that drifted away).
author:
  - kvmlab developers (@kvmlab)
requirements:
  - btrfs-progs on the managed host
options:
  device:
    description: A block device of the btrfs filesystem.
    type: path
    required: true
  name:
    description: Subvolume name, without slashes, such as C(@vm).
    type: str
    required: true
attributes:
  check_mode:
    support: full
    description: Looks with a read-only mount and creates nothing.
  diff_mode:
    support: full
    description: Shows whether the subvolume existed.
"""

EXAMPLES = r"""
- name: The example workstation's @vm subvolume
  kvmlab.hypervisor.btrfs_subvol:
    device: /dev/nvme0n1p2
    name: "@vm"
"""

RETURN = r"""
mounted_at:
  description: Where the subvolume was already mounted, if anywhere.
  returned: always
  type: list
  elements: str
  sample: [/mnt/vm]
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

BTRFS_FIRST_FREE_OBJECTID = 256  # inode number of every subvolume's root directory


def mounted_at(device: str, name: str, mountinfo: str) -> list[str]:
    """Mount points of subvolume `name` of the filesystem on `device`, from /proc/self/mountinfo."""
    real = os.path.realpath(device)
    found = []
    for line in mountinfo.splitlines():
        left, _sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2 or tail[0] != "btrfs":
            continue
        if os.path.realpath(tail[1]) == real and fields[3] == "/" + name:
            found.append(fields[4].replace("\\040", " "))
    return found


def core(module: AnsibleModule) -> dict:
    device, name = module.params["device"], module.params["name"]
    if "/" in name or name in ("", ".", ".."):
        module.fail_json(msg="name: %r must be a single subvolume name such as @vm" % name)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        mounts = mounted_at(device, name, f.read())
    result = {"changed": False, "mounted_at": mounts, "diff": {"before": {"exists": True}, "after": {"exists": True}}}
    if mounts:
        return result
    top = tempfile.mkdtemp(prefix="kvmlab-btrfs-")
    opts = "subvolid=5" + (",ro" if module.check_mode else "")
    rc, _out, err = module.run_command(["mount", "-t", "btrfs", "-o", opts, device, top])
    if rc != 0:
        os.rmdir(top)
        module.fail_json(msg="cannot mount the top level of %s: %s" % (device, err.strip()))
    try:
        path = os.path.join(top, name)
        if os.path.lexists(path):
            if os.lstat(path).st_ino != BTRFS_FIRST_FREE_OBJECTID:
                kind = "directory" if os.path.isdir(path) else "file"
                module.fail_json(msg="%s holds a %s named %s, not a subvolume; move it away or choose another "
                                 "kvmlab_storage_subvolume" % (device, kind, name))
            return result
        result.update(changed=True, diff={"before": {"exists": False}, "after": {"exists": True}})
        if not module.check_mode:
            # Looked up only here: check mode on a host without btrfs-progs yet still answers.
            btrfs = module.get_bin_path("btrfs", required=True)
            rc, _out, err = module.run_command([btrfs, "subvolume", "create", path])
            if rc != 0:
                module.fail_json(msg="btrfs subvolume create %s failed: %s" % (name, err.strip()))
    finally:
        module.run_command(["umount", top])
        os.rmdir(top)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={"device": {"type": "path", "required": True}, "name": {"type": "str", "required": True}},
        supports_check_mode=True,
    )
    module.exit_json(**core(module))


if __name__ == "__main__":
    main()
