# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: guest_errors
short_description: The mistakes of one guest spec, as a list, without failing
version_added: 0.1.0
author: kvmlab developers (@kvmlab)
description:
  - Checks one C(kvmlab.hypervisor.guest) spec as C(guest_spec) does and returns every mistake,
    each naming its field and the fix; an empty list when there is none.
  - With O(topology), the guest is also checked against the host, as the site checks its guests
    (C(guest_site)) - its memory against the host's, its pins against the host's CPUs, and its
    files and MACs against the guests libvirt already has.
extends_documentation_fragment:
  - kvmlab.hypervisor.guest_spec
options:
  topology:
    description: The host's C(kvmlab.hypervisor.host_facts) facts.
    type: dict
seealso:
  - plugin: kvmlab.hypervisor.guest_spec
    plugin_type: filter
  - plugin: kvmlab.hypervisor.guest_site
    plugin_type: filter
"""

EXAMPLES = r"""
- name: List the mistakes without failing
  ansible.builtin.debug:
    msg: "{{ {'name': 'x', 'memory': 'lots'} | kvmlab.hypervisor.guest_errors }}"

- name: Check a spec against this host too
  ansible.builtin.assert:
    that: (my_spec | kvmlab.hypervisor.guest_errors(topology=ansible_facts.kvmlab_host_facts)) == []
"""

RETURN = r"""
_value:
  description: The mistakes, one line each, such as C(guest_spec.memory - not a size - 'lots' ...).
  type: list
  elements: str
"""

from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.guest import normalize
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.site import resolve


def guest_errors(spec, var="guest_spec", topology=None):
    errors = normalize(spec, var)[1]
    if errors or not topology:
        return errors
    return resolve([spec], {"topology": topology, "single": True})[1]


class FilterModule:
    def filters(self):
        return {"guest_errors": guest_errors}
