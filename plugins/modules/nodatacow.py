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

import errno
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.fsflags import FS_NOCOW_FL, get_flags, set_flags


def cow_files(top: str) -> list[str]:
    found = []
    dev = os.stat(top).st_dev
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(root, d)).st_dev == dev]
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                if not get_flags(fd) & FS_NOCOW_FL:
                    found.append(path)
            except OSError:
                pass
            finally:
                os.close(fd)
    return sorted(found)


def core(module: AnsibleModule) -> dict:
    path = module.params["path"]
    if not os.path.isdir(path):
        if module.check_mode:
            return {"changed": True, "cow_files": [], "msg": "%s does not exist yet; would set C on it" % path,
                    "diff": {"before": {"nodatacow": False}, "after": {"nodatacow": True}}}
        module.fail_json(msg="%s is not a directory" % path)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            flags = get_flags(fd)
        except OSError as exc:
            if exc.errno in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL):
                module.fail_json(msg="%s is on a filesystem without file attributes (nodatacow needs btrfs); set "
                                 "kvmlab_storage_nodatacow: false for a plain directory" % path)
            raise
        has = bool(flags & FS_NOCOW_FL)
        if not has and not module.check_mode:
            set_flags(fd, flags | FS_NOCOW_FL)
            if not get_flags(fd) & FS_NOCOW_FL:
                module.fail_json(msg="%s did not keep the C attribute: its filesystem ignores nodatacow (btrfs "
                                 "honours it); set kvmlab_storage_nodatacow: false for a plain directory" % path)
    finally:
        os.close(fd)
    cow = cow_files(path)
    if cow:
        module.warn("%d file(s) under %s still use copy-on-write and stay so: %s%s. To convert one, stop its guest, "
                    "copy it (cp --reflink=never) to a new name in the directory and move it back."
                    % (len(cow), path, ", ".join(cow[:10]), " ..." if len(cow) > 10 else ""))
    return {"changed": not has, "cow_files": cow,
            "diff": {"before": {"nodatacow": has}, "after": {"nodatacow": True}}}


def main() -> None:
    module = AnsibleModule(argument_spec={"path": {"type": "path", "required": True}}, supports_check_mode=True)
    module.exit_json(**core(module))


if __name__ == "__main__":
    main()
