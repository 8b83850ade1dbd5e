#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: firmware_enrolled_keys
short_description: UEFI Secure Boot with Microsoft's keys enrolled, where the distribution ships none
version_added: 0.1.0
description:
  - Makes libvirt able to give q35 guests UEFI firmware with Secure Boot on and Microsoft's keys
    enrolled (what Windows 11 and shim-signed Linux media boot with), on hosts whose firmware
    package ships no such variable store (Arch Linux's edk2-ovmf).
  - When a QEMU firmware descriptor of the distribution already offers the features
    C(secure-boot) and C(enrolled-keys) (Debian's ovmf), it does nothing.
  - Otherwise it takes the distribution's Secure Boot descriptor (C(secure-boot) without
    C(enrolled-keys)), enrols the keys into a copy of its variable template with
    C(virt-fw-vars --enroll-redhat --secure-boot) (virt-firmware) under O(directory), and
    installs a descriptor of its own in O(descriptor_directory) with both features, pointing at
    that template and the same code file. libvirt's firmware autoselection then finds it as it
    would find a distribution's.
  - The template is rebuilt only when it is missing or the distribution's template changed (its
    sha256 is recorded in the descriptor). Guests' NVRAM files, created once by libvirt from the
    template, are never touched. The template is written before the descriptor that names it, so
    an interrupted run never leaves a descriptor without its template.
  - Descriptors named C(45-kvmlab-*) in O(descriptor_directory) are the module's own; one that
    no longer matches the distribution's firmware is removed. Nothing else is.
author:
  - kvmlab developers (@kvmlab)
options:
  directory:
    description: Where the variable template with enrolled keys is written.
    type: path
    default: /var/lib/kvmlab/firmware
  descriptor_directory:
    description: Where QEMU and libvirt read local firmware descriptors (they override the
      distribution's in C(/usr/share/qemu/firmware)).
    type: path
    default: /etc/qemu/firmware
  architecture:
    description: Guest architecture of the descriptors.
    type: str
    default: x86_64
attributes:
  check_mode:
    support: full
    description: Reports what it would build; runs no tool and writes nothing.
  diff_mode:
    support: full
    description: Shows the descriptor before and after.
requirements:
  - virt-fw-vars (Arch package virt-firmware, Debian 13 python3-virt-firmware, elsewhere
    C(pip install virt-firmware)), only when something must be built.
"""

EXAMPLES = r"""
- name: Secure Boot with Microsoft's keys for Windows 11 guests
  kvmlab.hypervisor.firmware_enrolled_keys:
"""

RETURN = r"""
state:
  description: >-
    C(distribution) (the distribution's descriptor offers enrolled keys), C(current) (the
    module's template and descriptor are up to date) or C(built) (they were, or would be, built).
  returned: always
  type: str
descriptor:
  description: The descriptor that offers enrolled keys.
  returned: always
  type: str
  sample: /etc/qemu/firmware/45-kvmlab-edk2-ovmf-x86_64-secure-4m-enrolled.json
template:
  description: The variable template with enrolled keys (when the module owns it).
  returned: when state is not distribution
  type: str
  sample: /var/lib/kvmlab/firmware/OVMF_VARS.4m.ms.fd
removed:
  description: The module's own descriptors removed because they no longer match the firmware.
  returned: when something changed
  type: list
  elements: str
"""

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import firmware
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.files import write_file

TOOL_HINT = ("install virt-firmware (Arch: virt-firmware; Debian 13: python3-virt-firmware; Debian 12 and "
             "others: pip install virt-firmware)")


def build_template(module, tool: str, source: str, target: str) -> None:
    """Enrol the keys into a copy of `source`, written to `target` atomically."""
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".kvmlab-vars-")
    os.close(handle)
    try:
        rc, out, err = module.run_command([tool, "--input", source, "--output", tmp, *firmware.ENROL_ARGS])
        if rc != 0 or not os.path.getsize(tmp):
            module.fail_json(msg="virt-fw-vars could not enrol the keys into a copy of %s: %s"
                             % (source, (err or out).strip()))
        os.chmod(tmp, 0o644)
        module.atomic_move(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "directory": {"type": "path", "default": firmware.ENROLLED_DIR},
            "descriptor_directory": {"type": "path", "default": firmware.FIRMWARE_DIRS[0]},
            "architecture": {"type": "str", "default": "x86_64"},
        },
        supports_check_mode=True,
    )
    p = module.params
    dirs = (p["descriptor_directory"], *(d for d in firmware.FIRMWARE_DIRS if d != p["descriptor_directory"]))
    skipped: list[str] = []
    plan = firmware.plan(firmware.descriptors(dirs, skipped), p["architecture"], p["directory"],
                         p["descriptor_directory"])
    for entry in skipped:
        module.warn("firmware descriptor skipped, as libvirt would skip it: %s" % entry)
    state = plan["state"]
    if state == "distribution":
        module.exit_json(changed=False, state=state, descriptor=plan["descriptor"])
    if state == "no-firmware" and module.check_mode:
        # A check run before the firmware package is installed: it cannot say yet whether the
        # distribution ships enrolled keys.
        module.exit_json(changed=True, state="built", descriptor="",
                         msg="no UEFI firmware is installed yet; enrolled keys would be built if it ships none")
    if state in ("no-firmware", "no-template"):
        why = " (%s)" % plan["error"] if plan.get("error") else ""
        module.fail_json(msg="no QEMU firmware descriptor in %s offers a UEFI Secure Boot variable template for %s q35 "
                         "guests to enrol Microsoft's keys into%s; install the distribution's OVMF package (Debian: "
                         "ovmf, Arch: edk2-ovmf)." % (" or ".join(dirs), p["architecture"], why))
    result = {"state": state, "descriptor": plan["descriptor"], "template": plan["template"]}
    stale = plan["stale"]
    if state == "current" and not stale:
        module.exit_json(changed=False, **result)
    diff = [{"before_header": path, "before": read(path), "after_header": path, "after": ""} for path in stale]
    if state == "build":
        diff.append({"before_header": plan["descriptor"], "before": plan["current"] or "",
                     "after_header": plan["descriptor"], "after": plan["content"]})
    if not module.check_mode:
        if state == "build":
            tool = shutil.which("virt-fw-vars")
            if not tool:
                module.fail_json(msg="virt-fw-vars is needed to enrol Microsoft's keys for Secure Boot guests, "
                                 "because no firmware descriptor here offers them: " + TOOL_HINT + ".")
            build_template(module, tool, plan["source_template"], plan["template"])
            write_file(module, plan["descriptor"], plan["content"], 0o644)
        for path in stale:
            os.unlink(path)
    result["state"] = "built" if state == "build" else state
    module.exit_json(changed=True, diff=diff, removed=stale, **result)


if __name__ == "__main__":
    main()
