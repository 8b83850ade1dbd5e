# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: storage_errors
short_description: Find the mistakes in a storage pool and volume spec
version_added: 0.1.0
author: kvmlab developers (@kvmlab)
description:
  - Checks libvirt storage pools (unique names, absolute paths, no two pools on one directory)
    and volumes (known pool, file name, size, absolute backing file).
  - With O(subvolume), also the btrfs subvolume of the VM storage (its name, mount point and mount
    options, as M(kvmlab.hypervisor.vm_storage) takes them), named after the storage role's variables.
  - Returns one message per mistake, each naming the inventory field; an empty list means the
    spec is sound. The storage role fails on a non-empty list before changing anything.
options:
  _input:
    description: The pools, as in C(kvmlab_storage_pools).
    type: list
    elements: dict
    required: true
  volumes:
    description: The volumes, as in C(kvmlab_storage_volumes).
    type: list
    elements: dict
    default: []
  subvolume:
    description: The subvolume, as M(kvmlab.hypervisor.vm_storage)'s O(kvmlab.hypervisor.vm_storage#module:subvolume).
    type: dict
"""

EXAMPLES = r"""
- name: Stop on a bad storage spec
  ansible.builtin.fail:
    msg: "{{ kvmlab_storage_pools | kvmlab.hypervisor.storage_errors(kvmlab_storage_volumes) | join('\n') }}"
  when: kvmlab_storage_pools | kvmlab.hypervisor.storage_errors(kvmlab_storage_volumes) | length > 0
"""

RETURN = r"""
_value:
  description: One message per mistake.
  type: list
  elements: str
"""

from ansible_collections.kvmlab.hypervisor.plugins.module_utils.btrfs import BtrfsError, validate
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.storage_network_checks import pool_errors, volume_errors

# The storage role's variables, for the subvolume's fields.
ROLE_FIELDS = {"name": "kvmlab_storage_subvolume", "device": "kvmlab_storage_btrfs_device",
               "mount_point": "kvmlab_storage_mount_point", "mount_options": "kvmlab_storage_mount_options",
               "nodatacow": "kvmlab_storage_nodatacow"}


def subvolume_errors(subvolume) -> list[str]:
    if not subvolume:
        return []
    try:
        validate(subvolume, ROLE_FIELDS)
    except BtrfsError as exc:
        return [str(exc)]
    return []


def storage_errors(pools, volumes=None, subvolume=None):
    errors = subvolume_errors(subvolume) + pool_errors(pools)
    if not isinstance(pools, list) or not all(isinstance(p, dict) for p in pools):
        return errors  # volumes name pools: check them against a list of pools
    return errors + volume_errors(volumes or [], pools)


class FilterModule:
    def filters(self):
        return {"storage_errors": storage_errors}
