# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: network_errors
short_description: Find the mistakes in a libvirt network spec
version_added: 0.1.0
author: kvmlab developers (@kvmlab)
description:
  - Checks libvirt networks for bridge names of at most 15 characters and unique, the gateway
    address and prefix, a DHCP range inside the subnet, and static reservations with addresses
    inside the subnet and no duplicate IP, MAC or name.
  - Returns one message per mistake, each naming the inventory field; an empty list means the
    spec is sound. The network role fails on a non-empty list before changing anything.
extends_documentation_fragment:
  - kvmlab.hypervisor.network_spec.networks
"""

EXAMPLES = r"""
- name: Stop on a bad network spec
  ansible.builtin.fail:
    msg: "{{ kvmlab_networks | kvmlab.hypervisor.network_errors | join('\n') }}"
  when: kvmlab_networks | kvmlab.hypervisor.network_errors | length > 0
"""

RETURN = r"""
_value:
  description: One message per mistake.
  type: list
  elements: str
"""

from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.storage_network_checks import (
    network_errors as _network_errors,
)


def network_errors(networks):
    return _network_errors(networks)


class FilterModule:
    def filters(self):
        return {"network_errors": network_errors}
