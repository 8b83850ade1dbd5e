# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inputs of the network role's filters: the networks, and Tailscale's interface."""

from __future__ import annotations


class ModuleDocFragment:
    # Filters that take the network role's networks as their input.
    NETWORKS = r"""
options:
  _input:
    description: The networks, as in C(kvmlab_networks).
    type: list
    elements: dict
    required: true
"""

    # Filters that take Tailscale's interface.
    TAILNET = r"""
options:
  interface:
    description: Tailscale's network interface, as in C(kvmlab_network_tailscale_interface).
    type: str
    default: tailscale0
"""
