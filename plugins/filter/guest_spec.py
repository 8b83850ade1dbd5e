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
    template needs - memory in KiB, disk and cdrom target devices, the deterministic MAC of each
    interface, the CPU topology and the pins as libvirt CPU lists.
  - Fails with every mistake at once, each naming its field and the fix. Use C(guest_errors) to
    get the list instead.
options:
  _input:
    description: The guest spec (see C(ansible-doc -t role kvmlab.hypervisor.guest)).
    type: dict
    required: true
  var:
    description: The name to use for the spec in messages.
    type: str
    default: guest_spec
  topology:
    description:
      - For C(guest_errors), the host's C(kvmlab.hypervisor.cpu_topology) facts; then it also
        checks the guest's memory against the host's and that its pins fit the host's CPUs
        (and the CPUs other guests pin).
    type: dict
"""

EXAMPLES = r"""
- name: The normalised spec of a small BIOS guest
  ansible.builtin.debug:
    msg: "{{ {'name': 'kali', 'firmware': 'bios', 'disks': [{'name': 'kali.qcow2', 'size': '33G'}]}
             | kvmlab.hypervisor.guest_spec }}"

- name: List the mistakes without failing
  ansible.builtin.debug:
    msg: "{{ {'name': 'x', 'memory': 'lots'} | kvmlab.hypervisor.guest_errors }}"
"""

RETURN = r"""
_value:
  description: The spec with every field set, plus C(memory_kib), C(cpu_cores), C(q35), C(vcpupin)
    and per disk C(dev) and C(volume), per cdrom C(dev) and C(bus).
  type: dict
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.guest import normalize
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.site import resolve


def guest_spec(spec, var="guest_spec"):
    normalized, errors = normalize(spec, var)
    if errors:
        raise AnsibleFilterError("The guest spec has mistakes:\n" + "\n".join(errors))
    return normalized


def guest_errors(spec, var="guest_spec", topology=None):
    errors = normalize(spec, var)[1]
    if errors or not topology:
        return errors
    return resolve([spec], {"topology": topology, "single": True})[1]


class FilterModule:
    def filters(self):
        return {"guest_spec": guest_spec, "guest_errors": guest_errors}
