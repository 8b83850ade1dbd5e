#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: libvirt_client_config
short_description: Set the default URI of users' libvirt clients, never writing through a link
version_added: 0.1.0
description:
  - Makes C(~/.config/libvirt/libvirt.conf) of each of O(users) set C(uri_default) to O(uri_default),
    keeping the file's other lines, so that their C(virsh), C(virt-install) and C(virt-manager)
    connect there by default. Missing directories are made (mode 0755, the user's).
  - The module runs as root, in homes the users control. Each part of the path is opened through
    the descriptor of its parent without following a link, and checked to be the user's own once
    open; the file is written as a new file in that directory and renamed over the old one. A
    symbolic link put in place at any moment, before or during the run, makes the module leave
    that user alone with a warning naming the part; a hard link to another file is replaced, never
    written through.
author:
  - kvmlab developers (@kvmlab)
options:
  users:
    description: The user names. Each must exist.
    type: list
    elements: str
    required: true
  uri_default:
    description: The libvirt URI, such as C(qemu:///system). No spaces, quotes or backslashes.
    type: str
    required: true
attributes:
  check_mode:
    support: full
    description: Reports the users whose file would change, and changes nothing.
  diff_mode:
    support: full
    description: Shows each changed file before and after.
"""

EXAMPLES = r"""
- name: Alice's virsh talks to the system daemon
  kvmlab.hypervisor.libvirt_client_config:
    users: [alice]
    uri_default: qemu:///system
"""

RETURN = r"""
changed_users:
  description: The users whose file was (in check mode, would be) written.
  returned: always
  type: list
  elements: str
  sample: [alice]
refused:
  description: The users left alone, each with the reason (also given as a warning).
  returned: always
  type: dict
  sample: {bob: "/home/bob/.config is a symbolic link or not a directory"}
"""

import os
import pwd

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import host_info


def main() -> None:
    module = AnsibleModule(argument_spec={"users": {"type": "list", "elements": "str", "required": True},
                                          "uri_default": {"type": "str", "required": True}},
                           supports_check_mode=True)
    uri = module.params["uri_default"]
    if not host_info.SAFE_URI.match(uri):
        module.fail_json(msg="uri_default: %r is not a plain libvirt URI (no spaces, quotes or backslashes), such "
                         "as qemu:///system" % uri)
    changed, refused, diffs = [], {}, []
    for name in module.params["users"]:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            module.fail_json(msg="users: %s does not exist" % name)
        path = os.path.join(entry.pw_dir, ".config", "libvirt", "libvirt.conf")
        try:
            before, after = host_info.set_client_uri(entry.pw_dir, (entry.pw_uid, entry.pw_gid), uri,
                                                     module.check_mode)
        except host_info.ConfigRefused as exc:
            refused[name] = "%s: %s" % (entry.pw_dir, exc)
            module.warn("The libvirt client config of %s is left alone (%s): set its default URI by hand, or fix "
                        "the path and run again." % (name, refused[name]))
            continue
        except OSError as exc:
            module.fail_json(msg="%s: %s: %s" % (name, path, exc.strerror or exc), changed_users=changed)
        if before != after:
            changed.append(name)
            diffs.append({"before_header": path, "after_header": path, "before": before, "after": after})
    module.exit_json(changed=bool(changed), changed_users=changed, refused=refused, diff=diffs)


if __name__ == "__main__":
    main()
