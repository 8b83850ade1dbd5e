# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a host must have before a guest is defined or started: firmware, TPM backend, virtiofsd
(checked against libvirt's domain capabilities and the QEMU firmware descriptors), free huge
pages, and an answering swtpm on each external TPM's socket. Each check raises KvmlabError,
naming the guest, the missing part and the package that provides it."""

from __future__ import annotations

import glob
import json
import os
import socket
import xml.etree.ElementTree as ET

from ansible_collections.kvmlab.hypervisor.plugins.module_utils import domain_merge as dx
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import firmware
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import libvirt_common as lc
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.errors import KvmlabError
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.host_info import parse_os_release
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.topology import hugepage_errors, read_topology

# The packages that provide each part, per distribution family: the names the host role installs
# (roles/host/vars/<family>*.yml; tests/unit/test_arch_facts.py holds the two together).
PACKAGES = {
    "uefi": {"debian": ["ovmf"], "arch": ["edk2-ovmf"]},
    "swtpm": {"debian": ["swtpm", "swtpm-tools"], "arch": ["swtpm"]},
    "virtiofsd": {"debian": ["virtiofsd"], "arch": ["virtiofsd"]},  # Debian 12: in qemu-system-common
}
VIRTIOFSD_PATHS = ("/usr/libexec/virtiofsd", "/usr/lib/virtiofsd", "/usr/lib/qemu/virtiofsd", "/usr/bin/virtiofsd")
OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")
TPM_PROBE_SECONDS = 10
TPM_GET_CAPABILITY = b"\x00\x00\x00\x01"  # swtpm's control channel: CMD_GET_CAPABILITY


def os_family() -> str:
    """"debian" or "arch" (by ID and ID_LIKE, as host_info reads them), else ""."""
    for path in OS_RELEASE:
        try:
            with open(path, encoding="utf-8") as handle:
                fields = parse_os_release(handle.read())
        except OSError:
            continue
        ids = [fields["id"], *fields["id_like"]]
        return "arch" if "arch" in ids else "debian" if "debian" in ids else ""
    return ""


def package(part: str) -> str:
    """The package(s) to install for a part, on this host's family (or on each family)."""
    names = PACKAGES[part]
    family = os_family()
    if family in names:
        return " and ".join(names[family])
    return " / ".join("%s: %s" % (fam, " and ".join(pkgs)) for fam, pkgs in sorted(names.items()))


def vhost_user_fs() -> bool:
    """Whether a vhost-user descriptor offers a virtiofsd (how libvirt finds it)."""
    for path in glob.glob("/etc/qemu/vhost-user/*.json") + glob.glob("/usr/share/qemu/vhost-user/*.json"):
        try:
            with open(path, encoding="utf-8") as handle:
                if json.load(handle).get("type") == "fs":
                    return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


def check_host(conn, name: str, root: ET.Element) -> None:
    """Raise, naming each missing part, when this host cannot run what the XML asks for."""
    virt = root.get("type", "kvm")
    type_el = root.find("os/type")
    arch = type_el.get("arch", "x86_64") if type_el is not None else "x86_64"
    machine = type_el.get("machine") if type_el is not None else None
    try:
        caps = ET.fromstring(conn.getDomainCapabilities(None, arch, machine, virt, 0))
    except lc.libvirt.libvirtError as exc:
        hint = (" A domain of type kvm needs a working /dev/kvm; use type qemu (emulation) where it has none."
                if virt == "kvm" else "")
        if "unable to parse json file" in str(exc):  # libvirt refuses every guest over one bad descriptor
            hint = (" libvirt cannot read that QEMU firmware descriptor, and answers nothing until it can: fix or "
                    "remove the file.")
        raise KvmlabError("guest %s: this host cannot run %s %s guests with machine %s: %s.%s"
                          % (name, virt, arch, machine, exc, hint)) from None
    errors: list[str] = []
    skipped: list[str] = []
    kind = dx.firmware(ET.tostring(root, encoding="unicode"))
    if kind != "bios":
        secure, enrolled = "secure-boot" in kind, "enrolled-keys" in kind
        offered = [v.text for v in caps.findall("os/enum[@name='firmware']/value")]
        expanded = caps.findtext("machine") or machine or ""
        wanted = "UEFI" + (" with Secure Boot" if secure else " without Secure Boot") + (
            " and enrolled keys" if enrolled else "")
        if offered and "efi" not in offered:
            errors.append("libvirt offers no UEFI firmware here; install %s." % package("uefi"))
        elif not firmware.matching(firmware.descriptors(skipped=skipped), arch, expanded, secure, enrolled):
            errors.append("no QEMU firmware descriptor in %s offers %s for %s %s; install %s%s."
                          % (" or ".join(firmware.FIRMWARE_DIRS), wanted, arch, expanded, package("uefi"),
                             " (skipped as malformed: %s)" % "; ".join(skipped) if skipped else ""))
    for tpm in root.findall("devices/tpm"):
        backend = tpm.find("backend")
        btype = backend.get("type") if backend is not None else "emulator"
        models = [v.text for v in caps.findall("devices/tpm/enum[@name='backendModel']/value")]
        if caps.find("devices/tpm") is not None and btype not in models:
            errors.append("libvirt cannot use a TPM with the %s backend here (it offers: %s); install %s."
                          % (btype, ", ".join(models) or "none", package("swtpm")))
    if root.find("devices/filesystem/driver[@type='virtiofs']") is not None:
        if not any(os.access(p, os.X_OK) for p in VIRTIOFSD_PATHS) and not vhost_user_fs():
            errors.append("virtiofs needs virtiofsd, which is not installed; install %s (on Debian 12, "
                          "qemu-system-common has it)." % package("virtiofsd"))
    if errors:
        raise KvmlabError("guest %s cannot run on this host:\n%s" % (name, "\n".join(errors)))


def check_hugepages(name: str, root: ET.Element) -> None:
    """A guest backed by huge pages starts only if the host has enough free ones."""
    if root.find("memoryBacking/hugepages") is None:
        return
    page = root.find("memoryBacking/hugepages/page")
    size = int(page.get("size", "2048")) if page is not None else 2048
    guest = {"name": name, "memory_mib": int(root.findtext("memory") or 0) // 1024, "hugepages": size}
    errors = hugepage_errors(read_topology(), [guest])
    if errors:
        raise KvmlabError("guest %s cannot start: %s" % (name, errors[0]))


def check_tpm_sockets(name: str, xml: str, actions: list) -> None:
    """Before a start: each external TPM's swtpm answers on its control socket within a bound.
    swtpm serves one control connection at a time; QEMU waits, without limit, for one another
    process holds."""
    done = {"actions": actions, "changed": len(actions) > 1}
    for source in ET.fromstring(xml).findall("devices/tpm/backend[@type='external']/source"):
        path = source.get("path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(TPM_PROBE_SECONDS)
        try:
            probe.connect(path)
            probe.sendall(TPM_GET_CAPABILITY)
            reply = probe.recv(4)
        except TimeoutError:
            raise KvmlabError("guest %s was not started: its TPM socket %s did not answer within %g s. Another "
                              "process holds swtpm's one control connection (a second QEMU?); find it with "
                              "`ss -xp | grep %s`." % (name, path, TPM_PROBE_SECONDS, path), **done) from None
        except OSError as exc:
            raise KvmlabError("guest %s was not started: its TPM socket %s does not accept connections (%s); is "
                              "the swtpm that serves it running (with the kvmlab.hypervisor.guest role, "
                              "kvmlab-swtpm-%s.socket)?" % (name, path, exc, name), **done) from None
        finally:
            probe.close()
        if not reply:
            raise KvmlabError("guest %s was not started: swtpm closed its TPM socket %s without answering."
                              % (name, path), **done)
