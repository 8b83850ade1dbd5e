# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connecting to libvirt from the collection's modules."""

from __future__ import annotations

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import libvirt
except ImportError:
    libvirt = None
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()
else:
    LIBVIRT_IMPORT_ERROR = None


# Options shared by the batch modules: each listed object's lifecycle, and the connection.
LIFECYCLE_OPTIONS = {
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "active": {"type": "bool", "default": True},
    "autostart": {"type": "bool", "default": True},
}
URI_OPTION = {"uri": {"type": "str", "default": "qemu:///system"}}


def run_module(core, argument_spec: dict, prepare=None) -> None:
    """The main() of a module that talks to libvirt: its options and `uri`, check mode, then
    exit_json(**core(module)); `prepare(module)` runs first (such as masking secrets)."""
    module = AnsibleModule(argument_spec={**argument_spec, **URI_OPTION}, supports_check_mode=True)
    if prepare is not None:
        prepare(module)
    module.exit_json(**core(module))


# Where a host has libvirt's daemons once their packages are installed (monolithic libvirtd, or
# the modular virtqemud), on Debian and Arch alike (Arch: /usr/bin, which /usr/sbin links to).
DAEMONS = ("/usr/sbin/libvirtd", "/usr/sbin/virtqemud", "/usr/bin/libvirtd", "/usr/bin/virtqemud")
LOCAL_URIS = ("qemu:///system", "qemu:///session")


def not_installed_yet(uri: str) -> bool:
    """Whether libvirt is simply not installed on this host yet: a local URI and no daemon binary.
    This is the one state check mode expects on a fresh host (the host role only predicted the
    install); a daemon that is down, a wrong URI or a refused permission are errors."""
    return uri in LOCAL_URIS and not any(os.path.exists(path) for path in DAEMONS)


def connect(module, uri: str, predicted: str, partial: dict | None = None):
    """Open `uri` read-write, or end the module.

    On a fresh host in check mode libvirt (or its Python binding) is not installed yet, because
    the host role only predicted the install: then the module ends with changed=True and
    `predicted` as its message instead of failing, returning `partial` too (what it found before
    it needed libvirt, such as its diff). Every other failure fails, in check mode too.
    """
    if libvirt is None:
        if module.check_mode:
            module.exit_json(**dict(partial or {}, changed=True,
                                    msg="libvirt's Python binding is not installed yet; " + predicted))
        module.fail_json(msg=missing_required_lib("libvirt-python (Debian: python3-libvirt, Arch: libvirt-python)"),
                         exception=LIBVIRT_IMPORT_ERROR)
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        if module.check_mode and not_installed_yet(uri):
            module.exit_json(**dict(partial or {}, changed=True,
                                    msg="libvirt is not installed at %s yet; %s" % (uri, predicted)))
        module.fail_json(msg="cannot connect to libvirt at %s: %s" % (uri, exc))
    return None


def is_no_such(exc) -> bool:
    """Whether a libvirtError says the object does not exist."""
    return exc.get_error_code() in (
        libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_NETWORK, libvirt.VIR_ERR_NO_STORAGE_VOL,
        libvirt.VIR_ERR_NO_DOMAIN)
