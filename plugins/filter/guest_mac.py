# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: guest_mac
short_description: The deterministic MAC address of a guest's network interface
version_added: 0.1.0
author: kvmlab developers (@kvmlab)
description:
  - Derives a MAC address under QEMU's prefix 52:54:00 from the guest name and the interface
    index, so the same spec gives the same MAC on every host and every run, and DHCP
    reservations match from the first boot.
  - The last three bytes are the first three bytes of SHA-256 of C(<name>/<index>).
options:
  _input:
    description: The guest's name.
    type: str
    required: true
  index:
    description: The interface's position in the guest's interface list.
    type: int
    default: 0
"""

EXAMPLES = r"""
- name: Reserve an address for win11's first interface
  ansible.builtin.set_fact:
    reservation: {name: win11, mac: "{{ 'win11' | kvmlab.hypervisor.guest_mac }}", ip: 192.168.122.136}
"""

RETURN = r"""
_value:
  description: The MAC address, lower case.
  type: str
  sample: 52:54:00:6e:3b:c9
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.guest import guest_mac as mac_for


def guest_mac(name, index=0):
    if not isinstance(name, str) or not name:
        raise AnsibleFilterError("guest_mac expects a guest name, got %r" % (name,))
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise AnsibleFilterError("guest_mac: index must be a non-negative integer, got %r" % (index,))
    return mac_for(name, index)


class FilterModule:
    def filters(self):
        return {"guest_mac": guest_mac}
