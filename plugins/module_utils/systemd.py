# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""systemd unit files from spec values: quoting by the setting a value goes into, and the units
of a guest's external TPM (swtpm), built on the controller with the rest of the guest."""

from __future__ import annotations

import posixpath
import re

from ansible_collections.kvmlab.hypervisor.plugins.module_utils.spec_values import CONTROL_RE

HEADER = "# Managed by kvmlab.hypervisor (the guest role); changes here are overwritten.\n"
GROUP_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")  # a POSIX group name as useradd accepts it


def quote(value, kind: str = "exec") -> str:
    """A value for a unit file: `exec` (one ExecStart= argument), `list` (one word of a
    space-separated setting such as RequiresMountsFor=) or `whole` (a setting that takes the
    whole line, such as ListenStream=). Raises ValueError for what no unit file can carry."""
    if not isinstance(value, str):
        raise ValueError("expects a string, got %r" % (value,))
    if CONTROL_RE.search(value):
        raise ValueError("%r holds a control character, which no unit file may carry" % value)
    text = value.replace("%", "%%")
    if kind == "whole":
        if text != text.strip():
            raise ValueError("%r starts or ends with white space, which systemd strips" % value)
        return text
    if kind not in ("exec", "list"):
        raise ValueError("kind must be exec, list or whole, got %r" % (kind,))
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    if kind == "exec":
        text = text.replace("$", "$$")
    return '"%s"' % text


def swtpm_units(g: dict, socket_group: str) -> list[dict]:
    """The socket and service that run swtpm for a guest with tpm: external: socket-activated,
    as tss, its state in tpm_state_dir (0600 files), its control socket at tpm_socket, which
    libvirt connects to. Returns [{name, content}]; ValueError names the field it cannot carry."""
    if not isinstance(socket_group, str) or not GROUP_RE.fullmatch(socket_group):
        raise ValueError("kvmlab_guest_swtpm_socket_group: %r is not a group name; use the group QEMU runs in, "
                         "such as kvm." % (socket_group,))
    name, quoted = g["name"], []
    for field, value, kind in (("tpm_socket", g["tpm_socket"], "whole"),
                               ("tpm_socket", posixpath.dirname(g["tpm_socket"]), "list"),
                               ("tpm_state_dir", g["tpm_state_dir"], "list"),
                               ("tpm_state_dir", g["tpm_state_dir"], "exec"),
                               ("tpm_state_dir", "dir=%s,mode=0600" % g["tpm_state_dir"], "exec")):
        try:
            quoted.append(quote(value, kind))
        except ValueError as exc:
            raise ValueError("%s: %s; choose another path." % (field, exc)) from None
    sock, sock_dir, state_list, state_dir, state_arg = quoted
    unit = "kvmlab-swtpm-%s" % name
    socket_text = (
        HEADER
        + "[Unit]\nDescription=swtpm TPM 2.0 control socket of guest %s (kvmlab)\n" % name
        + "RequiresMountsFor=%s\n\n" % sock_dir
        + "[Socket]\nListenStream=%s\nSocketUser=tss\nSocketGroup=%s\nSocketMode=0660\nRemoveOnStop=yes\n\n"
        % (sock, socket_group)
        + "[Install]\nWantedBy=sockets.target\n")
    service_text = (
        HEADER
        + "[Unit]\nDescription=swtpm TPM 2.0 of guest %s (kvmlab)\n" % name
        + "Requires=%s.socket\nAfter=%s.socket local-fs.target\n" % (unit, unit)
        + "RequiresMountsFor=%s\n\n" % state_list
        + "[Service]\nUser=tss\nGroup=tss\nUMask=0077\n"
        + "# The state directory (checked to be this guest's own) is made if missing and handed to tss at\n"
        + "# each start; its files are 0600.\n"
        + "ExecStartPre=+/usr/bin/install -d -o tss -g tss -m 0750 %s\n" % state_dir
        + "ExecStart=/usr/bin/swtpm socket --tpm2 --tpmstate %s --ctrl type=unixio,fd=3 --log level=1\n" % state_arg
        + "Restart=on-failure\n")
    return [{"name": unit + ".socket", "content": socket_text}, {"name": unit + ".service", "content": service_text}]
