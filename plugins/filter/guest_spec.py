# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: guest_spec
short_description: A guest spec with its defaults and derived values, checked
version_added: 0.1.0
author: kvmlab developers (@kvmlab)
description:
  - Fills in every default of a C(kvmlab.hypervisor.guest) spec and computes what the domain
    builder needs - memory in KiB, disk and cdrom target devices, the deterministic MAC of each
    interface, the CPU topology and the pins as libvirt CPU lists.
  - Fails with every mistake at once, each naming its field and the fix. C(guest_errors) returns
    the list instead; C(guest_site) checks many guests together.
extends_documentation_fragment:
  - kvmlab.hypervisor.guest_spec
"""

EXAMPLES = r"""
- name: The normalised spec of a small BIOS guest
  ansible.builtin.debug:
    msg: "{{ {'name': 'kali', 'firmware': 'bios', 'disks': [{'name': 'kali.qcow2', 'size': '33G'}]}
             | kvmlab.hypervisor.guest_spec }}"
"""

RETURN = r"""
_value:
  description: The spec with every field set, plus C(memory_kib), C(cpu_cores), C(q35), C(vcpupin)
    and per disk C(dev) and C(volume), per cdrom C(dev) and C(bus).
  type: dict
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.guest import normalize


def guest_spec(spec, var="guest_spec"):
    normalized, errors = normalize(spec, var)
    if errors:
        raise AnsibleFilterError("The guest spec has mistakes:\n" + "\n".join(errors))
    return normalized


class FilterModule:
    def filters(self):
        return {"guest_spec": guest_spec}
