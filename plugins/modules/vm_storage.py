#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vm_storage
short_description: Converge a hypervisor's VM storage - directories, libvirt pools and volumes - in one call
version_added: 0.2.0
description:
  - One remote call for what a hypervisor's VM storage needs, in this order - the directories
    (made, their owner, group and mode repaired), the libvirt directory pools (as
    M(kvmlab.hypervisor.libvirt_pool) converges them) and the volumes (as
    M(kvmlab.hypervisor.libvirt_volume) creates them, never recreated or shrunk).
  - Every directory, pool and volume spec is checked before anything changes (a path that is no
    directory, an unknown owner, a capacity or source no volume can have), so a bad entry stops the
    call with nothing done. A volume that would shrink is refused before any volume is touched. A
    libvirt error on one pool or volume fails the call there.
  - The storage role calls it for the host's directories, pools and volumes, the guests role for
    the guests' missing disks and shared directories.
  - A converged host calls no write API and reports no change.
author:
  - kvmlab developers (@kvmlab)
extends_documentation_fragment:
  - kvmlab.hypervisor.libvirt
  - kvmlab.hypervisor.storage.directories
  - kvmlab.hypervisor.storage.pools
  - kvmlab.hypervisor.storage.volumes
options:
  directories:
    default: []
  pools:
    default: []
  volumes:
    default: []
attributes:
  check_mode:
    support: full
    description: Reports what it would make, repair, define or create, and changes nothing.
  diff_mode:
    support: full
    description:
      - Shows each changed directory's owner, group and mode, each changed pool's path, active and
        autostart state, and each created or grown volume's capacity, before and after - keyed
        C(directory <path>), C(pool <name>) and C(volume <pool>/<name>).
"""

EXAMPLES = r"""
- name: The example workstation's VM storage
  kvmlab.hypervisor.vm_storage:
    directories:
      - {path: /mnt/vm/iso, owner: root, group: root, mode: "0755"}
      - {path: /mnt/vm/tpm, owner: tss, group: tss, mode: "0750"}
    pools:
      - {name: vm, path: /mnt/vm}
      - {name: iso, path: /mnt/vm/iso}
    volumes:
      - {pool: vm, name: win11.qcow2, capacity: 40G}
"""

RETURN = r"""
directories:
  description: The directories made or repaired (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/mnt/vm/tpm]
pools:
  description: What was done (or would be done in check mode), per pool.
  returned: always
  type: dict
  sample: {iso: [define, start, autostart_on], vm: []}
volumes:
  description:
    - For the volumes, what M(kvmlab.hypervisor.libvirt_volume) returns for them -
      RV(kvmlab.hypervisor.libvirt_volume#module:actions),
      RV(kvmlab.hypervisor.libvirt_volume#module:paths),
      RV(kvmlab.hypervisor.libvirt_volume#module:sources) and
      RV(kvmlab.hypervisor.libvirt_volume#module:removed_partial).
  returned: always
  type: dict
  sample: {actions: {vm/win11.qcow2: create}, paths: {vm/win11.qcow2: /mnt/vm/win11.qcow2}, sources: {},
           removed_partial: {}}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import directories as dirs
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import pool as pools
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import volume as volumes
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.libvirt_common import connect, run_module


def keyed(prefix: str, section: dict) -> dict:
    return {"%s %s" % (prefix, key): value for key, value in section.items()}


def core(module: AnsibleModule) -> dict:
    params = module.params
    try:
        made = dirs.plan(params["directories"], module.check_mode)
    except dirs.DirectoryError as exc:
        module.fail_json(msg=str(exc))
    pools.check(module, params["pools"])
    volumes.check_all(module, params["volumes"])
    conn = None
    if params["pools"] or params["volumes"]:
        conn = connect(module, params["uri"], "would converge the storage pools and volumes")
    before, after = dirs.diff(made)
    result = {"changed": bool(made), "directories": [path for path, _current, _want in made], "pools": {},
              "diff": {"before": keyed("directory", before), "after": keyed("directory", after)}}
    if not module.check_mode:
        try:
            dirs.apply(made)
        except dirs.DirectoryError as exc:
            module.fail_json(msg=str(exc), **result)
    if params["pools"]:
        done = pools.converge(module, conn, params["pools"])
        result["pools"] = done["actions"]
        result["changed"] |= done["changed"]
        for side in ("before", "after"):
            result["diff"][side].update(keyed("pool", done["diff"][side]))
    # Planned after the pools, so a pool defined just now holds its volumes; in check mode a pool
    # that would be defined first stands in (libvirt_volume's prediction).
    plans = volumes.plan_all(module, conn, params["volumes"])
    done = volumes.empty_result()
    volumes.converge(module, plans, done)
    result["volumes"] = {key: done[key] for key in ("actions", "paths", "sources", "removed_partial")}
    result["changed"] |= done["changed"]
    for side in ("before", "after"):
        result["diff"][side].update(keyed("volume", done["diff"][side]))
    return result


def main() -> None:
    run_module(core, {
        "directories": {"type": "list", "elements": "dict", "default": [], "options": dirs.DIRECTORY_OPTIONS},
        "pools": {"type": "list", "elements": "dict", "default": [], "options": pools.POOL_OPTIONS},
        "volumes": volumes.VOLUMES_ARGUMENT,
    }, prepare=volumes.mask_sources)


if __name__ == "__main__":
    main()
