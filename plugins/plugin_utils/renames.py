# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The public variables renamed in 0.1.0, old name -> new name: the one definition of the map.

Every public variable carries the collection's prefix `kvmlab_` (before, `storage_pools`,
`storage_volumes` and `network_allow_restart` were linux-system-roles' own names, with another
schema, and the guest list had five names). The lookup `kvmlab.hypervisor.renamed_variables`
turns the old names a run defines into one message each, naming the new one; the site and every
role fail on them before any change, so an inventory never silently loses a setting.
"""

from __future__ import annotations

# The three old ways to list guests became one list, kvmlab_guests.
GUEST_LIST = "kvmlab_guests"

RENAMES = {
    "host_gui_enabled": "kvmlab_host_gui_enabled",
    "host_extra_packages": "kvmlab_host_extra_packages",
    "host_libvirt_admins": "kvmlab_host_libvirt_admins",
    "host_reserve": "kvmlab_host_reserve",
    "host_libvirt_uri_default": "kvmlab_host_libvirt_uri_default",
    "host_uefi_enrolled_keys": "kvmlab_host_uefi_enrolled_keys",
    "host_allow_emulation_only": "kvmlab_host_allow_emulation_only",
    "host_kernel_modules": "kvmlab_host_kernel_modules",
    "host_qemu_conf": "kvmlab_host_qemu_conf",
    "storage_btrfs_enabled": "kvmlab_storage_btrfs_enabled",
    "storage_btrfs_device": "kvmlab_storage_btrfs_device",
    "storage_subvolume": "kvmlab_storage_subvolume",
    "storage_mount_point": "kvmlab_storage_mount_point",
    "storage_mount_options": "kvmlab_storage_mount_options",
    "storage_nodatacow": "kvmlab_storage_nodatacow",
    "storage_directories": "kvmlab_storage_directories",
    "storage_pools": "kvmlab_storage_pools",
    "storage_volumes": "kvmlab_storage_volumes",
    "network_networks": "kvmlab_networks",
    "network_allow_restart": "kvmlab_network_allow_restart",
    "network_ip_forward": "kvmlab_network_ip_forward",
    "network_tailscale_enabled": "kvmlab_network_tailscale_enabled",
    "network_tailscale_routes": "kvmlab_network_tailscale_routes",
    "network_tailscale_install": "kvmlab_network_tailscale_install",
    "network_tailscale_interface": "kvmlab_network_tailscale_interface",
    "network_tailscale_allow_in": "kvmlab_network_tailscale_allow_in",
    "site_guests": GUEST_LIST,
    "guest_specs": GUEST_LIST,
    "guest_spec": GUEST_LIST,
    "site_vm_roles": "kvmlab_vm_roles",
    "guest_overrides": "kvmlab_guest_overrides",
    "guest_swtpm_socket_group": "kvmlab_guest_swtpm_socket_group",
    "guest_uri": "kvmlab_guest_libvirt_uri",
}

# How to move a value that is not a plain rename.
HOW = {
    "guest_spec": "as its one entry: kvmlab_guests: [SPEC]",
}

# Names that linux-system-roles also read, with another schema: an old name of ours is told apart
# by its shape (this collection's pools have a path, its volumes a pool or a capacity; the
# linux-system-roles.storage ones have disks). network_allow_restart is a bool in both, so it
# only warns.
SHARED = {
    "storage_pools": lambda value: _any_key(value, ("path",)),
    "storage_volumes": lambda value: _any_key(value, ("pool", "capacity")),
    "network_allow_restart": None,
}


# The collection ships no VM roles: the example site's (vm_win11, vm_arch, vm_kali) moved to the
# example project in this repository (examples/workstation/roles), and a VM role is part of the
# user's project, listed in kvmlab_vm_roles by its plain name.
MOVED_ROLE_PREFIX = "kvmlab.hypervisor.vm_"


def moved_role_messages(vm_roles) -> list[str]:
    """One message for each entry of kvmlab_vm_roles that names a VM role of the collection."""
    return ["kvmlab_vm_roles: %s is no longer part of the collection (VM roles belong to your project); "
            "copy the role into your project's roles/ directory (the collection's repository keeps the "
            "example ones in examples/workstation/roles) and list it as %s." % (role, role.split(".")[-1])
            for role in vm_roles or [] if isinstance(role, str) and role.startswith(MOVED_ROLE_PREFIX)]


def _any_key(value, keys) -> bool:
    return isinstance(value, list) and any(isinstance(v, dict) and any(k in v for k in keys) for v in value)


def _message(old: str) -> str:
    how = HOW.get(old)
    return ("%s was renamed to %s%s; rename it where it is set (inventory, group_vars, playbook "
            "vars or -e): the collection no longer reads %s." % (old, RENAMES[old], " (%s)" % how if how else "", old))


def renamed_messages(variables) -> tuple[list[str], list[str]]:
    """(errors, warnings) for the old names defined in `variables` (a name -> value mapping),
    in the map's order. An old name that linux-system-roles also reads is an error only when
    its value has this collection's shape; a bool there is only a warning."""
    errors, warnings = [], []
    for old, new in RENAMES.items():
        if old not in variables:
            continue
        if old not in SHARED:
            errors.append(_message(old))
        elif SHARED[old] is None:
            warnings.append("%s is set. If it is meant for this collection, rename it to %s: the collection "
                            "no longer reads %s. If it is linux-system-roles.network's setting, nothing needs "
                            "to change." % (old, new, old))
        elif SHARED[old](variables[old]):
            errors.append(_message(old))
    return errors, warnings
