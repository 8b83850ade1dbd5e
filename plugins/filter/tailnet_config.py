# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: tailnet_config
short_description: Which tailnet routes to let into which libvirt NAT bridges
version_added: 0.1.0
author: kvmlab developers (@kvmlab)
description:
  - From the libvirt networks and the subnets advertised on the tailnet, the settings of the
    network role's libvirt hook (C(roles/network/files/kvmlab-tailnet-hook.py)) - a mapping with
    C(interface), and C(networks), each network's name mapped to its C(bridge) and C(routes).
  - A route and a NAT network's subnet that overlap give one rule for the smaller of the two
    (the narrowest that lets the advertised route in). Networks that are absent, or not NAT
    (routed and isolated ones need no such rule, or must not get one), and routes outside
    every network get none.
  - The companion filter C(tailnet_errors) returns the mistakes in the routes and interface,
    each naming its field.
options:
  routes:
    description: The advertised subnets, as in C(kvmlab_network_tailscale_routes).
    type: list
    elements: str
    required: true
extends_documentation_fragment:
  - kvmlab.hypervisor.network_spec.networks
  - kvmlab.hypervisor.network_spec.tailnet
"""

EXAMPLES = r"""
- name: The hook's settings
  ansible.builtin.copy:
    dest: /etc/libvirt/hooks/kvmlab-tailnet.json
    content: "{{ kvmlab_networks | kvmlab.hypervisor.tailnet_config(kvmlab_network_tailscale_routes) | to_nice_json }}"
    mode: "0644"
"""

RETURN = r"""
_value:
  description: The hook's settings.
  type: dict
"""

from ansible_collections.kvmlab.hypervisor.plugins.module_utils.network import tailnet_config


class FilterModule:
    def filters(self):
        return {"tailnet_config": tailnet_config}
