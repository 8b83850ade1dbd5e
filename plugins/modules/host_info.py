#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_info
short_description: Read what a hypervisor host offers and how its libvirt parts stand, in one call
version_added: 0.1.0
description:
  - Reads the operating system, the KVM device (by opening it), the CPU's virtualisation flags,
    IOMMU groups, kernel modules, systemd units and users in a single remote call.
  - The host role decides its preflight errors and what to converge from this one result, so a
    re-run that has nothing to do costs one remote task for all these checks instead of one per
    unit, module or user.
  - Changes nothing.
author:
  - kvmlab developers (@kvmlab)
options:
  units:
    description: systemd units whose load, active and unit-file states are reported.
    type: list
    elements: str
    default: []
  users:
    description: Users whose existence and supplementary groups are reported.
    type: list
    elements: str
    default: []
  client_config:
    description:
      - Also check whether each of O(users) may get a libvirt client config written in their home
        (the C(kvmlab.hypervisor.host) role's C(kvmlab_host_libvirt_uri_default)), and warn for those
        who may not (RV(users) C(config_problem)).
    type: bool
    default: false
  kernel_modules:
    description:
      - Kernel modules whose loaded and available states are reported.
      - The KVM module of the host's CPU vendor (C(kvm_intel) or C(kvm_amd)) is always added.
    type: list
    elements: str
    default: []
  files:
    description:
      - Files whose owner, group, mode, content checksum (SHA-1, as M(ansible.builtin.copy) compares)
        and C(key =) lines (as M(ansible.builtin.lineinfile) finds them) are reported, so that a role
        skips the tasks that would change nothing without a remote call.
    type: list
    elements: path
    default: []
  packages:
    description:
      - Packages to report as installed or missing, by distribution - a map from an os-release
        C(ID) (C(debian), C(arch)) or C(ID-<major release>) (C(debian-12)) to names, and C(*) for
        names on every distribution. The host's list is those of its C(ID), its
        C(ID-<major release>) and C(*), in that order (RV(packages.wanted)).
      - Read with C(dpkg-query) on Debian and its derivatives and C(pacman -T) on Arch and its
        derivatives, so that a role installs nothing, and runs no package module, when nothing is
        missing.
    type: dict
    default: {}
  kvm_device:
    description: Path of the KVM device.
    type: path
    default: /dev/kvm
attributes:
  check_mode:
    support: full
    description: Reads only; runs the same in check mode.
  diff_mode:
    support: none
    description: Reads only; there is nothing to diff.
notes:
  - Missing CPU virtualisation flags and a host without IOMMU groups are reported as warnings,
    not errors, since nested hypervisors often hide the flags while C(/dev/kvm) works.
"""

EXAMPLES = r"""
- name: Read the host's hypervisor state
  kvmlab.hypervisor.host_info:
    units: [libvirtd.socket, virtlogd.socket]
    users: [alice]
    kernel_modules: [vhost_net, tun, bridge]
  register: host

- name: Stop early when KVM cannot be used
  ansible.builtin.assert:
    that: host.kvm.openable
    fail_msg: "{{ host.kvm.error }}"
"""

RETURN = r"""
os:
  description: The operating system, from /etc/os-release.
  returned: always
  type: dict
  sample: {id: debian, version_id: "12", major: "12", id_like: [], pretty_name: Debian GNU/Linux 12 (bookworm)}
kvm:
  description: The KVM device; C(openable) is true only when opening it read-write succeeded.
  returned: always
  type: dict
  sample: {path: /dev/kvm, present: true, openable: true, error: "", mode: "0660", uid: 0, gid: 104}
kvm_group:
  description: Name of the group that owns the KVM device, empty when it has none.
  returned: always
  type: str
  sample: kvm
cpu:
  description: CPU vendor, its virtualisation flags, and the KVM module for that vendor.
  returned: always
  type: dict
  sample: {vendor: GenuineIntel, virtualization_flags: [vmx], running_under_hypervisor: false, kvm_module: kvm_intel}
iommu:
  description: Whether the kernel created IOMMU groups, and the IOMMU options on its command line.
  returned: always
  type: dict
  sample: {enabled: true, groups: 21, cmdline_options: [intel_iommu=on]}
kernel_modules:
  description: Loaded and available state of each requested kernel module.
  returned: always
  type: dict
  sample: {vhost_net: {loaded: true, available: true}}
kernel_modules_to_load:
  description: Requested modules the running kernel offers but has not loaded.
  returned: always
  type: list
  elements: str
  sample: [vhost_net]
units:
  description: Load, active and unit-file state of each requested systemd unit.
  returned: always
  type: dict
  sample: {libvirtd.socket: {load_state: loaded, active_state: active, unit_file_state: enabled}}
users:
  description:
    - Existence, supplementary groups and home of each requested user, and the C(uri_default) its
      libvirt clients use (from C(~/.config/libvirt/libvirt.conf); null when unset).
    - C(config_problem) says why that file must not be written for the user (a symbolic link, a
      part that is not the user's own, no home); null when it may.
  returned: always
  type: dict
  sample: {alice: {exists: true, groups: [libvirt], home: /home/alice, uri_default: "qemu:///system",
                   config_problem: null}}
files:
  description:
    - For each of O(files) - C(exists), C(owner), C(group), C(mode) (four octal digits), C(sha1)
      of the content and C(lines), the last line for each key of the lines that read
      C([#]key = value) (commented out or not).
    - A file over 1 MiB has C(sha1) and C(lines) null.
  returned: always
  type: dict
  sample: {/etc/libvirt/qemu.conf: {exists: true, owner: root, group: root, mode: "0600",
           sha1: 0a4d55a8d778e5022fab701977c5d840bbc486d0, lines: {swtpm_user: 'swtpm_user = "tss"'}}}
packages:
  description:
    - The host's packages from O(packages) (C(wanted)), those of them not installed (C(missing)),
      and the package database read (C(manager) - C(dpkg), C(pacman) or null).
    - A name is installed when C(dpkg-query) reports it installed, or when C(pacman -T) finds it
      satisfied (by an installed package of that name or one that provides it). A name with an
      architecture, a version or a glob, and every name on a distribution without either
      manager, counts as missing, so the package module decides.
  returned: always
  type: dict
  contains:
    wanted:
      description: The host's packages - those of its C(ID), its C(ID-<major release>) and C(*), without repeats.
      type: list
      elements: str
    missing:
      description: Those of RV(packages.wanted) that are not installed, in their order.
      type: list
      elements: str
    manager:
      description: The package database read - C(dpkg), C(pacman), or null on another distribution.
      type: str
  sample: {wanted: [qemu-system-x86, libvirt-daemon-system], missing: [], manager: dpkg}
firmware_enrolled_keys:
  description:
    - Where q35 guests get UEFI Secure Boot with enrolled keys from - C(distribution) (a
      descriptor of the distribution's firmware package), C(current) (the one
      kvmlab.hypervisor.firmware_enrolled_keys built, up to date), C(build) (it must be built or
      rebuilt), C(no-firmware) or C(no-template).
  returned: always
  type: str
  sample: distribution
"""

import grp
import os
import platform
import pwd

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import firmware, host_info


def read(path: str, default: str = "") -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def existing_users(names: list[str], check_config: bool = False) -> dict[str, dict]:
    """The users that resolve, with their home and their libvirt clients' default URI."""
    found = {}
    for name in names:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        problem = host_info.config_problem(entry.pw_dir, entry.pw_uid) if check_config else None
        config = "" if problem else read(os.path.join(entry.pw_dir, ".config", "libvirt", "libvirt.conf"))
        found[name] = {"home": entry.pw_dir, "uri_default": host_info.parse_uri_default(config),
                       "config_problem": problem}
    return found


def core(module: AnsibleModule) -> dict:
    params = module.params
    cpu = host_info.parse_cpuinfo(read("/proc/cpuinfo"))
    modules = list(params["kernel_modules"])
    if cpu["kvm_module"] and cpu["kvm_module"] not in modules:
        modules.insert(0, cpu["kvm_module"])
    module_state = host_info.kernel_module_state(
        modules, "/sys/module", os.path.join("/lib/modules", platform.release()))

    units = {}
    if params["units"]:
        systemctl = module.get_bin_path("systemctl", required=True)
        rc, out, err = module.run_command(
            [systemctl, "show", "--no-pager", "-p", "Id,LoadState,ActiveState,UnitFileState", "--"]
            + params["units"])
        if rc != 0:
            module.fail_json(msg="systemctl show failed: %s" % err.strip(), rc=rc)
        units = host_info.parse_systemctl_show(out)
        for name in params["units"]:
            # systemctl reports unknown units too (LoadState=not-found); keep the asked name.
            units.setdefault(name, {"load_state": "not-found", "active_state": "inactive",
                                    "unit_file_state": ""})

    kvm = host_info.kvm_device(params["kvm_device"])
    kvm_group = ""
    if kvm["gid"] is not None:
        try:
            kvm_group = grp.getgrgid(kvm["gid"]).gr_name
        except KeyError:
            kvm_group = str(kvm["gid"])

    users = host_info.user_state(params["users"], existing_users(params["users"], params["client_config"]),
                                 {g.gr_name: list(g.gr_mem) for g in grp.getgrall()})
    for name, user in users.items():
        problem = user["config_problem"]
        if problem:
            module.warn("The libvirt client config of %s is left alone (%s): set its default URI by hand, "
                        "or fix the path and run again." % (name, problem))

    iommu = host_info.iommu_state("/sys/kernel/iommu_groups", read("/proc/cmdline"))
    if kvm["openable"] and not cpu["virtualization_flags"]:
        module.warn("The CPU shows no vmx/svm flag although %s works: a nested or paravirtualised "
                    "setup. Guests run, but firmware features such as SMM may not." % kvm["path"])
    if not iommu["enabled"]:
        module.warn("No IOMMU groups: PCI passthrough is unavailable. Enable VT-d/AMD-Vi in the "
                    "firmware and add intel_iommu=on (Intel) to the kernel command line if needed.")

    for key, names in params["packages"].items():
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            module.fail_json(msg="packages: %s must be a list of package names, not %r" % (key, names))
    os_release = host_info.parse_os_release(read("/etc/os-release") or read("/usr/lib/os-release"))
    wanted = host_info.wanted_packages(params["packages"], os_release)
    manager = host_info.package_manager(os_release)
    return {
        "changed": False,
        "os": os_release,
        "kvm": kvm,
        "kvm_group": kvm_group,
        "cpu": cpu,
        "iommu": iommu,
        "kernel_modules": module_state,
        "kernel_modules_to_load": [m for m, s in module_state.items()
                                   if s["available"] and not s["loaded"]],
        "units": units,
        "users": users,
        "firmware_enrolled_keys": firmware.plan(firmware.descriptors())["state"],
        "files": {path: host_info.file_state(path) for path in params["files"]},
        "packages": {"wanted": wanted, "manager": manager,
                     "missing": host_info.missing_packages(manager, wanted, lambda argv: run_query(module, argv))
                     if wanted else []},
    }


def run_query(module: AnsibleModule, argv: list[str]) -> tuple[int, str, str]:
    """A package database query; a missing tool is rc -1 (pacman's 127 means a missing package)."""
    path = module.get_bin_path(argv[0])
    if path is None:
        return -1, "", "%s not found" % argv[0]
    return module.run_command([path, *argv[1:]], environ_update={"LC_ALL": "C"})


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "units": {"type": "list", "elements": "str", "default": []},
            "users": {"type": "list", "elements": "str", "default": []},
            "client_config": {"type": "bool", "default": False},
            "kernel_modules": {"type": "list", "elements": "str", "default": []},
            "files": {"type": "list", "elements": "path", "default": []},
            "packages": {"type": "dict", "default": {}},
            "kvm_device": {"type": "path", "default": "/dev/kvm"},
        },
        supports_check_mode=True,
    )
    module.exit_json(**core(module))


if __name__ == "__main__":
    main()
