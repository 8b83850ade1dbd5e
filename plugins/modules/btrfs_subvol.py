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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import btrfs


def core(module: AnsibleModule) -> dict:
    device, name = module.params["device"], module.params["name"]
    if "/" in name or name in ("", ".", ".."):
        module.fail_json(msg="name: %r must be a single subvolume name such as @vm" % name)
    entries = btrfs.read_mounts()
    try:
        created = btrfs.ensure_subvolume(module, device, name, entries)
    except btrfs.BtrfsError as exc:
        module.fail_json(msg=str(exc))
    return {"changed": created, "mounted_at": btrfs.mounted_at(device, name, entries),
            "diff": {"before": {"exists": not created}, "after": {"exists": True}}}


def main() -> None:
    module = AnsibleModule(
        argument_spec={"device": {"type": "path", "required": True}, "name": {"type": "str", "required": True}},
        supports_check_mode=True,
    )
    module.exit_json(**core(module))


if __name__ == "__main__":
    main()
