# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: renamed_variables
short_description: The variables of this collection that a run still sets by their old names
version_added: 0.1.0
author: kvmlab developers (@kvmlab)
description:
  - Returns one message for each old name of this collection's public variables that the run
    defines, naming its new name (for example C(storage_pools) is now C(kvmlab_storage_pools)).
    The site playbook and every role fail on these messages before any change, so an inventory
    that still uses an old name never silently loses its setting.
  - C(storage_pools) and C(storage_volumes) are also linux-system-roles.storage's variables, so
    they count only when their entries have this collection's shape (pools with a C(path),
    volumes with a C(pool) or C(capacity)). C(network_allow_restart), a bool in both
    collections, is only warned about.
  - Also one message for each entry of C(kvmlab_vm_roles) that names a VM role of this collection
    (C(kvmlab.hypervisor.vm_win11) and the like). The collection ships no VM roles; they belong
    to the user's project, listed by their plain name.
  - Takes no terms. Runs on the controller only.
"""

EXAMPLES = r"""
- name: Fail on variables that were renamed
  ansible.builtin.fail:
    msg: "{{ __renamed | join('\n') }}"
  vars:
    __renamed: "{{ query('kvmlab.hypervisor.renamed_variables') }}"
  when: __renamed | length > 0
"""

RETURN = r"""
_raw:
  description: One message per old name found; empty when none is defined.
  type: list
  elements: str
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.renames import (
    RENAMES,
    SHARED,
    moved_role_messages,
    renamed_messages,
)

display = Display()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        if terms:
            raise AnsibleLookupError("renamed_variables takes no terms, got %r" % (terms,))
        variables = variables or {}
        found = {}
        for old in RENAMES:
            if old in variables:
                # Only the shared names' values are looked at (to tell linux-system-roles' apart).
                found[old] = self._templar.template(variables[old]) if SHARED.get(old) else None
        errors, warnings = renamed_messages(found)
        if "kvmlab_vm_roles" in variables:
            errors += moved_role_messages(self._templar.template(variables["kvmlab_vm_roles"]))
        for warning in warnings:
            display.warning(warning)
        return errors
