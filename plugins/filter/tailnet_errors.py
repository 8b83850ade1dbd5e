# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: tailnet_errors
short_description: Find the mistakes in the tailnet routes and interface of the network role
version_added: 0.1.0
author: kvmlab developers (@kvmlab)
description:
  - Checks that each of C(kvmlab_network_tailscale_routes) is a subnet written canonically (such as
    C(192.168.122.0/24)) and that C(kvmlab_network_tailscale_interface) is a network interface name.
  - Returns one message per mistake, naming the field; an empty list means they are sound.
options:
  _input:
    description: The advertised subnets, as in C(kvmlab_network_tailscale_routes).
    type: list
    elements: str
    required: true
extends_documentation_fragment:
  - kvmlab.hypervisor.network_spec.tailnet
"""

EXAMPLES = r"""
- name: Stop on bad tailnet settings
  vars:
    tailnet_problems: >-
      {{ kvmlab_network_tailscale_routes
         | kvmlab.hypervisor.tailnet_errors(kvmlab_network_tailscale_interface) }}
  ansible.builtin.fail:
    msg: "{{ tailnet_problems | join('\n') }}"
  when: tailnet_problems | length > 0
"""

RETURN = r"""
_value:
  description: One message per mistake.
  type: list
  elements: str
"""

from ansible_collections.kvmlab.hypervisor.plugins.module_utils.network import tailnet_errors


class FilterModule:
    def filters(self):
        return {"tailnet_errors": tailnet_errors}
