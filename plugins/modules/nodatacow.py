#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nodatacow
short_description: Keep a btrfs directory nodatacow (chattr +C) for VM images
version_added: 0.1.0
description:
  - Sets the C(C) (no copy-on-write) attribute on a directory, so files created in it later,
    such as qcow2 images, inherit it. Copy-on-write under a qcow2 image fragments it badly.
  - Files that already exist keep copy-on-write; btrfs cannot change that for a file with data,
    and the module never rewrites data. It lists them in RV(cow_files) and warns, with the way to
    convert one (copy it into the directory while its guest is off).
author:
  - kvmlab developers (@kvmlab)
options:
  path:
    description: The directory.
    type: path
    required: true
attributes:
  check_mode:
    support: full
    description: Reports whether it would set the attribute, and changes nothing.
  diff_mode:
    support: full
    description: Shows the attribute before and after.
notes:
  - Only btrfs honours the attribute; on another filesystem the module fails and says so.
"""

EXAMPLES = r"""
- name: VM images on /mnt/vm are nodatacow
  kvmlab.hypervisor.nodatacow:
    path: /mnt/vm
"""

RETURN = r"""
cow_files:
  description: Regular files under the directory that still use copy-on-write.
  returned: always
  type: list
  elements: str
  sample: [/mnt/vm/old.qcow2]
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import btrfs


def core(module: AnsibleModule) -> dict:
    path = module.params["path"]
    if not os.path.isdir(path):
        if module.check_mode:
            return {"changed": True, "cow_files": [], "msg": "%s does not exist yet; would set C on it" % path,
                    "diff": {"before": {"nodatacow": False}, "after": {"nodatacow": True}}}
        module.fail_json(msg="%s is not a directory" % path)
    try:
        missing = btrfs.ensure_nodatacow(path, module.check_mode)
    except btrfs.BtrfsError as exc:
        module.fail_json(msg=str(exc))
    cow = btrfs.cow_files(path)
    btrfs.warn_cow(module, path, cow)
    return {"changed": missing, "cow_files": cow,
            "diff": {"before": {"nodatacow": not missing}, "after": {"nodatacow": True}}}


def main() -> None:
    module = AnsibleModule(argument_spec={"path": {"type": "path", "required": True}}, supports_check_mode=True)
    module.exit_json(**core(module))


if __name__ == "__main__":
    main()
