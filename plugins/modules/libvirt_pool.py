#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: libvirt_pool
short_description: Converge libvirt directory storage pools, all in one call
version_added: 0.1.0
description:
  - Makes each listed directory pool defined, built, active and autostarted with the given target
    path, and repairs drift (an undefined pool is defined again, a stopped one started, autostart
    turned back on, a changed target path corrected; the pool is restarted for that and guests keep
    their open disks).
  - C(state=absent) stops and undefines a pool. Its directory and the files in it are never
    deleted.
  - When nothing differs it calls no write API, so a converged host reports no change.
  - Written because C(community.libvirt.virt_pool) does nothing when a pool already exists (no
    path or autostart repair) and reports C(build) as changed on every run.
author:
  - kvmlab developers (@kvmlab)
extends_documentation_fragment:
  - kvmlab.hypervisor.libvirt
  - kvmlab.hypervisor.storage.pools
options:
  pools:
    required: true
attributes:
  check_mode:
    support: full
    description: Reports what it would do and calls no write API.
  diff_mode:
    support: full
    description: Shows each changed pool's path, active and autostart state before and after.
"""

EXAMPLES = r"""
- name: The example workstation's pools
  kvmlab.hypervisor.libvirt_pool:
    pools:
      - {name: vm, path: /mnt/vm}
      - {name: iso, path: /mnt/vm/iso}
      - {name: default, path: /var/lib/libvirt/images}
"""

RETURN = r"""
actions:
  description: What was done (or would be done in check mode), per pool.
  returned: always
  type: dict
  sample: {iso: [define, start, autostart_on], vm: []}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import pool as pools
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.libvirt_common import URI_OPTION, connect


def core(module: AnsibleModule) -> dict:
    pools.check(module, module.params["pools"])
    conn = connect(module, module.params["uri"], "would define the pools")
    return pools.converge(module, conn, module.params["pools"])


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pools": {"type": "list", "elements": "dict", "required": True, "options": pools.POOL_OPTIONS},
            **URI_OPTION,
        },
        supports_check_mode=True,
    )
    module.exit_json(**core(module))


if __name__ == "__main__":
    main()
