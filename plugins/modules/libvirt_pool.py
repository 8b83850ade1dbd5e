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
options:
  pools:
    description: The pools.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Pool name.
        type: str
        required: true
      path:
        description: Absolute path of the pool's directory. Required unless C(state=absent).
        type: path
      state:
        description: Whether the pool should exist.
        type: str
        choices: [present, absent]
        default: present
      active:
        description: Whether the pool should be running.
        type: bool
        default: true
      autostart:
        description: Whether libvirt starts the pool at boot.
        type: bool
        default: true
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

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import pool as poolplan
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.libvirt_common import (
    LIFECYCLE_OPTIONS,
    URI_OPTION,
    connect,
    is_no_such,
    libvirt,
)


def current_state(conn, name: str) -> tuple:
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        if is_no_such(exc):
            return None, None
        raise
    xml = pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE)
    return pool, {"path": poolplan.target_path(xml), "active": bool(pool.isActive()),
                  "autostart": bool(pool.autostart()), "xml": xml}


def summary(state: dict | None) -> dict:
    if state is None:
        return {"defined": False}
    return {"defined": True, "path": state["path"], "active": state["active"], "autostart": state["autostart"]}


def apply(conn, pool, state, spec: dict, actions: list[str]):
    for action in actions:
        if action == "define":
            pool = conn.storagePoolDefineXML(poolplan.pool_xml(spec["name"], spec["path"]), 0)
        elif action == "redefine":
            pool = conn.storagePoolDefineXML(poolplan.with_target_path(state["xml"], spec["path"]), 0)
        elif action == "build":
            pool.build(libvirt.VIR_STORAGE_POOL_BUILD_NEW)
        elif action == "stop":
            pool.destroy()
        elif action == "start":
            pool.create(0)
        elif action in ("autostart_on", "autostart_off"):
            pool.setAutostart(1 if action == "autostart_on" else 0)
        elif action == "undefine":
            pool.undefine()


def core(module: AnsibleModule) -> dict:
    for spec in module.params["pools"]:
        if spec["state"] == "present" and not spec.get("path"):
            module.fail_json(msg="pools[%s].path is required for a present pool" % spec["name"])
    conn = connect(module, module.params["uri"], "would define the pools")
    result = {"changed": False, "actions": {}, "diff": {"before": {}, "after": {}}}
    for spec in module.params["pools"]:
        name = spec["name"]
        try:
            pool, state = current_state(conn, name)
            want = dict(spec, path_exists=bool(spec.get("path")) and os.path.isdir(spec["path"]))
            actions = poolplan.plan(want, state)
            result["actions"][name] = actions
            if not actions:
                continue
            result["changed"] = True
            result["diff"]["before"][name] = summary(state)
            result["diff"]["after"][name] = (
                {"defined": False} if spec["state"] == "absent"
                else {"defined": True, "path": spec["path"], "active": spec["active"], "autostart": spec["autostart"]})
            if not module.check_mode:
                apply(conn, pool, state, spec, actions)
        except libvirt.libvirtError as exc:
            module.fail_json(msg="pool %s: %s" % (name, exc), **result)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pools": {
                "type": "list", "elements": "dict", "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "path": {"type": "path"},
                    **LIFECYCLE_OPTIONS,
                },
            },
            **URI_OPTION,
        },
        supports_check_mode=True,
    )
    module.exit_json(**core(module))


if __name__ == "__main__":
    main()
