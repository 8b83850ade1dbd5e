# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The input of the filters that check one guest spec (guest_spec, guest_errors)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  _input:
    description: The guest spec (see C(ansible-doc -t role kvmlab.hypervisor.guest)).
    type: dict
    required: true
  var:
    description: The name to use for the spec in messages.
    type: str
    default: guest_spec
"""
