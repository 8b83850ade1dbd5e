#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: libvirt_domain
short_description: Converge libvirt guests from their desired XML, keeping their NVRAM, TPM state and disks
version_added: 0.1.0
description:
  - One guest (O(name), O(xml) and its options), or many in one call (O(guests)); a batch reads
    libvirt's guest list once and converges each guest in turn. A guest that fails does not stop
    the others; the module then fails at the end, naming each failed guest with its reason.
  - Compares the desired domain XML (built by the C(kvmlab.hypervisor.guest) role) with
    libvirt's inactive XML of the guest, and redefines the guest only when they differ.
  - Only what the desired XML says is compared. What libvirt adds by itself (uuid, PCI addresses,
    controllers, aliases, the firmware files it selected, the expanded machine type) is not drift
    and survives a redefinition, so the guest keeps seeing the same hardware. Devices of the kinds
    the XML owns (disks, interfaces, filesystems, graphics, channels, TPMs, host devices), CPU pins
    and boot entries that the XML no longer lists are removed.
  - When nothing differs it calls no write API. Check mode and C(--diff) show exactly what a real
    run would define, start or stop.
  - NVRAM and TPM state are never touched by a redefinition. A change of firmware kind (BIOS and
    UEFI, Secure Boot on or off, enrolled keys on or off) needs a new NVRAM, so it is refused
    unless O(reset_nvram) is set; then the old NVRAM file is copied to a timestamped backup next
    to it before it is removed, and libvirt creates a new one from the matching template at the
    next start.
  - Before the first definition and before every change it checks the XML against what this host
    can run (C(virConnectGetDomainCapabilities)) and the QEMU firmware descriptors in
    C(/usr/share/qemu/firmware) and C(/etc/qemu/firmware), and fails naming the missing package for
    a UEFI guest with or without Secure Boot and enrolled keys, KVM, the TPM backend, virtiofs
    and virtiofsd.
  - A cdrom whose ISO file is missing is attached empty, with a warning, instead of failing.
  - A console that listens on an address other than loopback gets a warning on every run.
  - Before a start, each external TPM's swtpm must answer on its control socket within 10 s;
    otherwise (another process holds swtpm's one control connection, on which QEMU would wait
    without limit) the module fails, naming the guest and the socket.
  - Every state a guest can be in is converged. A paused guest is resumed and a suspended (S3)
    one woken up (also before a graceful shutdown, which they cannot hear otherwise); a guest
    running without a persistent definition (C(virsh create)) is defined; a guest with a saved
    state (managed save) starts from it; a crashed one is started again.
  - A guest backed by huge pages that is to run is refused, before it is defined, when the host
    has too few free pages of that size.
  - A new guest whose XML has no C(<uuid>) gets a deterministic one (a UUID5 of its name), so a
    guest undefined with O(state=absent) and defined again finds its libvirt-managed TPM state,
    which libvirt files by uuid, and its NVRAM again. An existing guest keeps its uuid.
  - Lifecycle. C(running) starts the guest. C(shutdown) asks it to shut down (as libvirt does by default,
    through its guest agent when one is connected, else the ACPI power button) and waits up to
    O(shutdown_timeout) seconds; it is forced off only with O(force_stop), otherwise the module
    fails honestly. C(absent) stops it the same way and undefines it, keeping its disks, NVRAM
    and TPM state unless O(purge) is set.
  - A change to a running guest takes effect at its next boot. RV(restart_required) says so, and
    with O(allow_restart) the module shuts the guest down gracefully and starts it again.
  - Why not C(community.libvirt.virt) 2.x? Its C(command=define) reports C(changed=false) when
    libvirt's XML did not change and shows a diff (since 1.3.0), but it defines the user's whole XML
    on every run, so whatever the XML does not hold (a device virt-install added, metadata) is
    dropped, and its check mode compares libvirt's XML with the raw XML given, so it predicts a
    change for nearly every guest (libvirt's defaults are never in the raw XML). This module merges
    only what the spec owns into libvirt's XML and diffs that; it also deletes only the files a
    guest owns (and only when no other guest uses them), keeps NVRAM and TPM state on undefine and
    backs NVRAM up on a firmware change, shuts down with a timeout, and converges many guests in
    one call.
author:
  - kvmlab developers (@kvmlab)
requirements:
  - libvirt 9.0 or later (for C(KEEP_TPM) and the external TPM backend)
  - lxml on the managed host (Debian C(python3-lxml), Arch C(python-lxml); the C(kvmlab.hypervisor.host)
    role installs it), so that libvirt's XML is written back with its own namespace prefixes
extends_documentation_fragment:
  - kvmlab.hypervisor.libvirt
options:
  name:
    description:
      - The guest's name; must match the C(<name>) in O(xml).
      - One of O(name) and O(guests) is required.
    type: str
  xml:
    description:
      - The desired domain XML. Required unless O(state=absent).
      - Only what it says is owned; see the description.
    type: str
  guests:
    description:
      - Many guests in one call, each with the options of one guest (O(name), O(xml), O(state),
        O(autostart), O(shutdown_timeout), O(force_stop), O(allow_restart), O(reset_nvram),
        O(purge), O(owned_paths), O(graphics_password)).
      - An entry that does not set O(state), O(autostart), O(shutdown_timeout), O(force_stop) or
        O(allow_restart) takes the module's own value. O(reset_nvram), O(purge), O(owned_paths)
        and O(graphics_password) are never inherited.
      - Results are in RV(guests), by name; each C(--diff) section names its guest.
    type: list
    elements: dict
    suboptions:
      name:
        description: The guest's name; must match the C(<name>) in its O(guests[].xml).
        type: str
        required: true
      xml:
        description: Its desired domain XML. Required unless its state is C(absent).
        type: str
      state:
        description: As O(state).
        type: str
        choices: [running, shutdown, absent]
      autostart:
        description: As O(autostart).
        type: bool
      shutdown_timeout:
        description: As O(shutdown_timeout).
        type: int
      force_stop:
        description: As O(force_stop).
        type: bool
      allow_restart:
        description: As O(allow_restart).
        type: bool
      reset_nvram:
        description: As O(reset_nvram), for this guest only.
        type: bool
      purge:
        description: As O(purge), for this guest only.
        type: bool
      owned_paths:
        description: As O(owned_paths).
        type: list
        elements: str
      graphics_password:
        description: As O(graphics_password).
        type: str
  state:
    description: C(running), C(shutdown) (defined, not running) or C(absent) (undefined).
    type: str
    choices: [running, shutdown, absent]
    default: running
  autostart:
    description: Whether libvirt starts the guest when the host boots. Ignored for C(absent).
    type: bool
    default: false
  shutdown_timeout:
    description: Seconds to wait for a guest to shut down after the ACPI request.
    type: int
    default: 120
  force_stop:
    description:
      - Force a guest off (like pulling its power plug) when it has not shut down within
        O(shutdown_timeout). Without it the module fails instead.
    type: bool
    default: false
  allow_restart:
    description: Restart a running guest (gracefully) when its definition changed.
    type: bool
    default: false
  reset_nvram:
    description:
      - Allow a change of firmware kind, which needs a new NVRAM. The old file is backed up first
        (C(<nvram>.<timestamp>.bak)).
    type: bool
    default: false
  purge:
    description:
      - With O(state=absent), also delete the guest's disks (device C(disk), not cdroms), its
        NVRAM, its libvirt-managed TPM state, its saved state and snapshot metadata.
      - Data loss by design; off by default.
      - Only files in O(owned_paths) are deleted. A disk or NVRAM file that the definition names
        but O(owned_paths) does not, or that another defined guest uses, is an error, and
        nothing is deleted or undefined.
    type: bool
    default: false
  graphics_password:
    description:
      - The console's password (libvirt's C(passwd) of every C(<graphics>)). Not logged; shown
        as C(********) in differences and diffs. Without it, a password set by hand is removed.
    type: str
  owned_paths:
    description:
      - The files the guest's spec names as its own (its disks, its NVRAM file), as the
        C(kvmlab.hypervisor.guest) role resolves them. O(purge) deletes and O(reset_nvram)
        replaces only these, and only while no other defined guest uses them.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Reports what it would define, start, stop or undefine, and calls no write API.
  diff_mode:
    support: full
    description: Shows libvirt's inactive XML before and the XML it would define after.
notes:
  - Preflight runs only when something is to be defined, so a converged guest costs one lookup
    and one XML read.
seealso:
  - module: kvmlab.hypervisor.libvirt_volume
  - module: community.libvirt.virt
"""

EXAMPLES = r"""
- name: A guest, running, from the XML the guest_site filter built for it
  kvmlab.hypervisor.libvirt_domain:
    name: kali
    xml: "{{ (__site.guests | selectattr('name', 'equalto', 'kali') | first).xml }}"
    state: running

- name: Three guests in one call; a failing one does not stop the others
  kvmlab.hypervisor.libvirt_domain:
    guests:
      - {name: win11, xml: "{{ win11_xml }}"}
      - {name: kali, xml: "{{ kali_xml }}", state: shutdown}
      - {name: scratch, state: absent}
    autostart: true

- name: Remove a guest with its disks and NVRAM, but only the files its spec names
  kvmlab.hypervisor.libvirt_domain:
    name: scratch
    state: absent
    purge: true
    owned_paths: [/mnt/vm/scratch.qcow2, /var/lib/libvirt/qemu/nvram/scratch_VARS.fd]

- name: Stop a guest, forcing it off if it ignores ACPI for 60 s
  kvmlab.hypervisor.libvirt_domain:
    name: kali
    xml: "{{ kali_xml }}"
    state: shutdown
    shutdown_timeout: 60
    force_stop: true

- name: Remove a guest but keep its disks, NVRAM and TPM state
  kvmlab.hypervisor.libvirt_domain:
    name: scratch
    state: absent

- name: Move win11 from BIOS to UEFI, backing up the old NVRAM
  kvmlab.hypervisor.libvirt_domain:
    name: win11
    xml: "{{ win11_xml }}"
    reset_nvram: true
"""

RETURN = r"""
guests:
  description:
    - With O(guests), each guest's result by name - RV(actions), RV(differences),
      RV(restart_required), RV(nvram_backup) and RV(purged) as below, C(changed), and for a guest
      that failed C(failed) and C(msg).
  returned: with O(guests)
  type: dict
  sample: {kali: {changed: true, actions: [start], differences: [], restart_required: false}}
actions:
  description: What was done (or would be done in check mode), in order.
  returned: with O(name)
  type: list
  elements: str
  sample: [define, autostart_on, start]
differences:
  description: One line per owned difference between the desired XML and libvirt's.
  returned: with O(name)
  type: list
  elements: str
  sample: ["domain/memory: '2097152' -> '4194304'"]
restart_required:
  description:
    - With O(name), whether the guest is running with an older definition (the change applies at
      its next boot); with O(guests), the names of such guests.
  returned: always
  type: raw
  sample: false
nvram_backup:
  description: Where the old NVRAM was copied before a firmware change.
  returned: when an NVRAM file was backed up
  type: str
  sample: /mnt/vm/win11_SECURE_VARS.fd.20261126T203000.bak
purged:
  description: Files deleted by O(purge).
  returned: when O(purge) deleted something
  type: list
  elements: str
"""

import glob
import ipaddress
import json
import os
import re
import shutil
import socket
import time
import uuid
import xml.etree.ElementTree as ET

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import domain_xml as dx
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import firmware
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.libvirt_common import (
    URI_OPTION,
    connect,
    libvirt,
)
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.topology import hugepage_errors, read_topology

UUID_NAMESPACE = uuid.UUID("5b0c7a3e-4f1d-4b8e-9a52-6b7e1f0c2d11")  # kvmlab guests: uuid5(this, name)
TPM_PROBE_SECONDS = 10
TPM_GET_CAPABILITY = b"\x00\x00\x00\x01"  # swtpm's control channel: CMD_GET_CAPABILITY
STATE_NAMES = {3: "paused", 7: "suspended"}  # VIR_DOMAIN_PAUSED, VIR_DOMAIN_PMSUSPENDED; others: running
VIRTIOFSD_PATHS = ("/usr/libexec/virtiofsd", "/usr/lib/virtiofsd", "/usr/lib/qemu/virtiofsd", "/usr/bin/virtiofsd")
PACKAGES = {  # what provides each part, per distribution family
    "uefi": {"debian": "ovmf", "arch": "edk2-ovmf"},
    "swtpm": {"debian": "swtpm and swtpm-tools", "arch": "swtpm"},
    "virtiofsd": {"debian": "virtiofsd (Debian 13; on Debian 12 qemu-system-common has it)", "arch": "virtiofsd"},
}


def os_family() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as handle:
            fields = dict(line.rstrip("\n").split("=", 1) for line in handle if "=" in line)
    except OSError:
        return ""
    ids = (fields.get("ID", "") + " " + fields.get("ID_LIKE", "")).replace('"', "").split()
    return "arch" if "arch" in ids else "debian" if "debian" in ids else ""


def package(part: str) -> str:
    names = PACKAGES[part]
    return names.get(os_family()) or " / ".join("%s: %s" % kv for kv in sorted(names.items()))


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


def preflight(module, conn, name: str, root: ET.Element) -> None:
    """Fail, naming the missing part, when this host cannot run what the XML asks for."""
    virt = root.get("type", "kvm")
    type_el = root.find("os/type")
    arch = type_el.get("arch", "x86_64") if type_el is not None else "x86_64"
    machine = type_el.get("machine") if type_el is not None else None
    try:
        caps = ET.fromstring(conn.getDomainCapabilities(None, arch, machine, virt, 0))
    except libvirt.libvirtError as exc:
        hint = (" virt_type kvm needs a working /dev/kvm; use virt_type qemu (emulation) where it has none."
                if virt == "kvm" else "")
        if "unable to parse json file" in str(exc):  # libvirt refuses every guest over one bad descriptor
            hint = (" libvirt cannot read that QEMU firmware descriptor, and answers nothing until it can: fix or "
                    "remove the file.")
        module.fail_json(msg="guest %s: this host cannot run %s %s guests with machine %s: %s.%s"
                         % (name, virt, arch, machine, exc, hint))
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
            errors.append("virtiofs needs virtiofsd, which is not installed; install %s." % package("virtiofsd"))
    if errors:
        module.fail_json(msg="guest %s cannot run on this host:\n%s" % (name, "\n".join(errors)))


def empty_missing_cdroms(module, name: str, root: ET.Element) -> None:
    """A cdrom whose ISO is missing becomes an empty drive, with a warning."""
    for disk in root.findall("devices/disk[@device='cdrom']"):
        source = disk.find("source")
        path = source.get("file") if source is not None else None
        if path and not os.path.exists(path):
            disk.remove(source)
            target = disk.find("target")
            module.warn("guest %s: ISO %s is missing, so cdrom %s is attached empty. Put the image there "
                        "and run again to insert it." % (name, path, target.get("dev") if target is not None else "?"))


def hide_password(text: str) -> str:
    """A console password (libvirt's passwd attribute, or its value in a difference) as ********."""
    text = re.sub(r"""(passwd=)(['"]).*?\2""", r"\1\2********\2", text)
    return re.sub(r"(@passwd: ).*", r"\1'********' -> '********'", text)


def check_tpm_sockets(module, name: str, xml: str, actions: list) -> None:
    """Before a start: each external TPM's swtpm answers on its control socket within a bound.
    swtpm serves one control connection at a time; QEMU waits, without limit, for one another
    process holds."""
    for source in ET.fromstring(xml).findall("devices/tpm/backend[@type='external']/source"):
        path = source.get("path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(TPM_PROBE_SECONDS)
        try:
            probe.connect(path)
            probe.sendall(TPM_GET_CAPABILITY)
            reply = probe.recv(4)
        except TimeoutError:
            module.fail_json(msg="guest %s was not started: its TPM socket %s did not answer within %g s. Another "
                                 "process holds swtpm's one control connection (a second QEMU?); find it with "
                                 "`ss -xp | grep %s`." % (name, path, TPM_PROBE_SECONDS, path),
                             actions=actions, changed=len(actions) > 1)
        except OSError as exc:
            module.fail_json(msg="guest %s was not started: its TPM socket %s does not accept connections (%s); "
                                 "is kvmlab-swtpm-%s.socket running?" % (name, path, exc, name),
                             actions=actions, changed=len(actions) > 1)
        finally:
            probe.close()
        if not reply:
            module.fail_json(msg="guest %s was not started: swtpm closed its TPM socket %s without answering."
                             % (name, path), actions=actions, changed=len(actions) > 1)


def warn_public_console(module, name: str, root: ET.Element) -> None:
    """On every run: a console that listens beyond this host (graphics_public) has no password."""
    for graphics in root.findall("devices/graphics"):
        for listen in graphics.findall("listen"):
            address = listen.get("address") or ""
            try:
                public = not ipaddress.ip_address(address).is_loopback
            except ValueError:
                continue
            if public:
                module.warn("guest %s: its %s console listens on %s, reachable from the network %s "
                            "(graphics_public). Keep 127.0.0.1 and tunnel through SSH unless this is what you "
                            "want." % (name, graphics.get("type"), address,
                                       "behind its password" if graphics.get("passwd") else "without a password"))


def check_hugepages(module, name: str, root: ET.Element) -> None:
    """A guest backed by huge pages starts only if the host has enough free ones."""
    if root.find("memoryBacking/hugepages") is None:
        return
    page = root.find("memoryBacking/hugepages/page")
    size = int(page.get("size", "2048")) if page is not None else 2048
    guest = {"name": name, "memory_mib": int(root.findtext("memory") or 0) // 1024, "hugepages": size}
    errors = hugepage_errors(read_topology(), [guest])
    if errors:
        module.fail_json(msg="guest %s cannot start: %s" % (name, errors[0]))


def wake(module, dom, name: str, actions: list) -> None:
    """A paused or suspended (S3) guest is resumed: it is to run, or to hear an ACPI shutdown."""
    state = dom.state()[0]
    if state not in (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PMSUSPENDED):
        return
    actions.append("resume" if state == libvirt.VIR_DOMAIN_PAUSED else "wakeup")
    if module.check_mode:
        return
    try:
        if state == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
        else:
            dom.pMWakeup(0)
    except libvirt.libvirtError as exc:
        module.fail_json(msg="guest %s is %s and did not %s: %s" % (
            name, "paused" if state == libvirt.VIR_DOMAIN_PAUSED else "suspended",
            actions[-1], exc), actions=actions, changed=len(actions) > 1)


def stop(module, dom, name: str, actions: list) -> None:
    """Shut the guest down gracefully, waiting; force it off only when allowed."""
    if not dom.isActive():
        return
    wake(module, dom, name, actions)
    actions.append("shutdown")
    if module.check_mode:
        return
    try:
        dom.shutdown()
    except libvirt.libvirtError as exc:
        if dom.isActive():
            module.fail_json(msg="guest %s: the shutdown request failed: %s" % (name, exc), actions=actions)
    deadline = time.monotonic() + module.params["shutdown_timeout"]
    while dom.isActive() and time.monotonic() < deadline:
        time.sleep(1)
    if dom.isActive():
        if not module.params["force_stop"]:
            module.fail_json(
                msg="guest %s did not shut down within %d s of the shutdown request (guest agent or ACPI: its OS "
                    "ignores it, or has not booted). Shut it down from inside, raise shutdown_timeout, or "
                    "set force_stop: true to force it off like pulling the plug."
                    % (name, module.params["shutdown_timeout"]),
                actions=actions, changed=len(actions) > 1)
        dom.destroy()
        actions.append("force_stop")


def backup_nvram(path: str) -> str | None:
    if not path or not os.path.exists(path):
        return None
    backup = "%s.%s.bak" % (path, time.strftime("%Y%m%dT%H%M%S"))
    shutil.copy2(path, backup)
    return backup


def delete_disks(conn, paths: list) -> list:
    """Only for purge: delete the disk images, through libvirt when a pool holds them."""
    deleted = []
    for path in paths:
        try:
            conn.storageVolLookupByPath(path).delete(0)
        except libvirt.libvirtError:
            if not os.path.exists(path):
                continue
            os.remove(path)
        deleted.append(path)
    return deleted


def guard_owned(module, conn, name: str, paths: list, what: str) -> None:
    """Fail, before any change, unless every path is the guest's own by its spec and no other
    defined guest uses it."""
    owned = set(module.params["owned_paths"])
    problems = ["%s is not one of the files its spec names (%s)" % (p, ", ".join(sorted(owned)) or "none")
                for p in paths if p not in owned]
    for other in conn.listAllDomains(0):
        if other.name() == name:
            continue
        root = ET.fromstring(other.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        used = {el.get("file") for el in root.iter("source")} | {el.text for el in root.iter("nvram")}
        problems += ["%s is used by guest %s too" % (p, other.name()) for p in paths if p in used]
    if problems:
        module.fail_json(msg="guest %s: %s would touch files that are not only its own: %s. Nothing was deleted "
                             "or changed; name the guest's own files in its spec, or remove the file by hand."
                         % (name, what, "; ".join(problems)))


def absent(module, conn, dom, name: str) -> dict:
    result = {"changed": False, "actions": [], "differences": [], "restart_required": False}
    if dom is None:
        return result
    actions = result["actions"]
    before = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    purge = module.params["purge"]
    disks = [s.get("file") for s in ET.fromstring(before).findall("devices/disk[@device='disk']/source")
             if s.get("file")]
    if purge:
        nvram = dx.nvram_path(before)
        guard_owned(module, conn, name, disks + ([nvram] if nvram and os.path.exists(nvram) else []), "purge")
    stop(module, dom, name, actions)
    flags = 0
    if dom.hasManagedSaveImage(0):
        if not purge:
            module.fail_json(msg="guest %s has a saved state (managed save); start it, or remove the state with "
                                 "`virsh managedsave-remove %s`, or set purge: true." % (name, name))
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    if purge:
        flags |= (libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_TPM
                  | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
    else:
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_KEEP_TPM
    actions.append("undefine")
    if purge:
        actions.extend("delete %s" % d for d in disks)
    if not module.check_mode:
        dom.undefineFlags(flags)
        if purge:
            result["purged"] = delete_disks(conn, disks)
    result["changed"] = True
    result["diff"] = {"before": dx.pretty(before), "after": ""}
    return result


def present(module, conn, dom, name: str) -> dict:
    root = ET.fromstring(module.params["xml"])
    if (root.findtext("name") or "").strip() != name:
        module.fail_json(msg="guest %s: the XML names the domain %r; they must match."
                         % (name, root.findtext("name")))
    empty_missing_cdroms(module, name, root)
    if module.params["graphics_password"]:
        for graphics in root.findall("devices/graphics"):
            graphics.set("passwd", module.params["graphics_password"])
    warn_public_console(module, name, root)
    result = {"changed": False, "actions": [], "differences": [], "restart_required": False}
    if module.params["state"] == "running" and not (dom is not None and dom.isActive()):
        check_hugepages(module, name, root)  # before any change
    dom = define(module, conn, dom, root, result)
    lifecycle(module, dom, name, result)
    result["changed"] = bool(result["actions"])
    return result


def define(module, conn, dom, root: ET.Element, result: dict):
    """Define the guest, or redefine it when it differs; returns the domain (None in check mode)."""
    if dom is None:
        return define_new(module, conn, root, result)
    redefine(module, conn, dom, ET.tostring(root, encoding="unicode"), result)
    return dom


def define_new(module, conn, root: ET.Element, result: dict):
    name = module.params["name"]
    if root.find("uuid") is None:
        # Deterministic, like the MACs: a guest undefined (keeping its NVRAM and libvirt-managed
        # TPM state, which is filed by uuid) and defined again finds its TPM state again.
        uuid_el = ET.Element("uuid")
        uuid_el.text = str(uuid.uuid5(UUID_NAMESPACE, name))
        root.insert(1, uuid_el)
    desired = ET.tostring(root, encoding="unicode")
    preflight(module, conn, name, root)
    result["actions"].append("define")
    result["differences"] = ["domain %s: not defined yet, would be defined" % name]
    result["diff"] = {"before": "", "after": dx.pretty(desired)}
    if module.check_mode:
        return None
    try:
        return conn.defineXMLFlags(desired, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    except libvirt.libvirtError as exc:
        module.fail_json(msg="guest %s: libvirt refused the definition: %s" % (name, exc), xml=desired)
    return None


def redefine(module, conn, dom, desired: str, result: dict) -> None:
    params, actions, name = module.params, result["actions"], module.params["name"]
    # SECURE: with the console's password, so that a changed or removed password is a difference.
    current = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    diffs = dx.differences(desired, current)
    persistent = dom.isPersistent()
    if not persistent:
        # Running without a persistent definition (created with `virsh create`): it would vanish
        # at its next shutdown, so it is defined, whatever else differs.
        diffs = ["domain %s: running without a persistent definition, would be defined" % name, *diffs]
    result["differences"] = diffs = [hide_password(d) for d in diffs]
    if not diffs:
        return
    old_kind, new_kind = dx.firmware(current), dx.firmware(desired)
    merged = dx.merge(desired, current)
    if old_kind != new_kind:
        if not params["reset_nvram"]:
            module.fail_json(
                msg="guest %s: changing its firmware from %s to %s needs a new NVRAM (its enrolled keys and "
                    "boot entries are lost). Set reset_nvram: true to do it; the old NVRAM file is backed "
                    "up first. Nothing was changed." % (name, old_kind, new_kind),
                differences=diffs)
        nvram = dx.nvram_path(current)
        if nvram and os.path.exists(nvram):
            guard_owned(module, conn, name, [nvram], "reset_nvram")
        merged = dx.replace_os(merged, desired)
        actions.append("reset_nvram")
    preflight(module, conn, name, ET.fromstring(merged))
    actions.append("redefine" if persistent else "define")
    result["diff"] = {"before": hide_password(dx.pretty(current)), "after": hide_password(dx.pretty(merged))}
    if not module.check_mode:
        # Copy first, define, and only then remove the old NVRAM (libvirt makes the new one from
        # the new template at the next start): a refused definition loses nothing.
        backup = backup_nvram(dx.nvram_path(current)) if old_kind != new_kind else None
        try:
            conn.defineXMLFlags(merged, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        except libvirt.libvirtError as exc:
            module.fail_json(msg="guest %s: libvirt refused the new definition: %s. Nothing was changed. The "
                                 "differences it was to repair: %s" % (name, exc, "; ".join(diffs)),
                             xml=hide_password(merged), differences=diffs)
        if backup:
            os.remove(dx.nvram_path(current))
            result["nvram_backup"] = backup
    if dom.isActive():
        result["restart_required"] = True


def lifecycle(module, dom, name: str, result: dict) -> None:
    """Autostart, then start or stop."""
    params, actions = module.params, result["actions"]
    active = bool(dom is not None and dom.isActive())
    autostart = False if dom is None else bool(dom.autostart())
    shown = STATE_NAMES.get(dom.state()[0], "running") if active else "shut off"
    before = "state: %s\nautostart: %s\n" % (shown, autostart)
    after = "state: %s\nautostart: %s\n" % ("running" if params["state"] == "running" else "shut off",
                                            params["autostart"])
    if before != after or (active and result["restart_required"] and params["allow_restart"]):
        # Shown with --diff next to the XML's diff.
        result.setdefault("diff", [])
        if isinstance(result["diff"], dict):
            result["diff"] = [result["diff"]]
        result["diff"].append({"before_header": "guest %s lifecycle" % name, "before": before,
                               "after_header": "guest %s lifecycle" % name, "after": after})
    if autostart != params["autostart"]:
        actions.append("autostart_on" if params["autostart"] else "autostart_off")
        if dom is not None and not module.check_mode:
            dom.setAutostart(1 if params["autostart"] else 0)
    if params["state"] == "running":
        if active and result["restart_required"] and params["allow_restart"]:
            stop(module, dom, name, actions)
            active = False if module.check_mode else bool(dom.isActive())
            result["restart_required"] = False
        if active:
            wake(module, dom, name, actions)
        else:
            saved = dom is not None and dom.hasManagedSaveImage(0)
            actions.append("start" if not saved else "start from its saved state")
            if not module.check_mode:
                check_tpm_sockets(module, name, dom.XMLDesc(0), actions)
                try:
                    dom.create()
                except libvirt.libvirtError as exc:
                    module.fail_json(msg="guest %s is defined but did not start: %s" % (name, exc),
                                     actions=actions, changed=len(actions) > 1)
    elif active:
        stop(module, dom, name, actions)
        result["restart_required"] = False
    if result["restart_required"]:
        module.warn("guest %s is running with its old definition; the change applies at its next boot "
                    "(or set allow_restart: true)." % name)


class GuestFailed(Exception):
    """One guest did not converge; in a batch the others go on."""

    def __init__(self, msg: str, extra: dict) -> None:
        super().__init__(msg)
        self.msg, self.extra = msg, extra


class Guest:
    """One guest's run, used where the helpers above take the module: its own options as
    `params`, the module's check mode and warnings, and a fail_json that ends this guest only."""

    def __init__(self, module, params: dict) -> None:
        self.params, self.check_mode, self.warn = params, module.check_mode, module.warn

    def fail_json(self, msg: str, **extra):
        raise GuestFailed(msg, extra)


PER_GUEST = ("name", "xml", "state", "autostart", "shutdown_timeout", "force_stop", "allow_restart", "reset_nvram",
             "purge", "owned_paths", "graphics_password")
# What a guests[] entry that does not set it takes from the module's own options; the
# destructive ones (reset_nvram, purge) and the guest's own data are never inherited.
INHERITED = ("state", "autostart", "shutdown_timeout", "force_stop", "allow_restart")


def entries(params: dict) -> list[dict]:
    if params["guests"] is None:
        return [{key: params[key] for key in PER_GUEST}]
    out = []
    for entry in params["guests"]:
        own = {key: entry.get(key) for key in PER_GUEST}
        for key in INHERITED:
            if own[key] is None:
                own[key] = params[key]
        own["owned_paths"] = own["owned_paths"] or []
        own["reset_nvram"], own["purge"] = bool(own["reset_nvram"]), bool(own["purge"])
        out.append(own)
    return out


def converge_guest(module, conn, domains: dict, params: dict) -> dict:
    """One guest, by its own options; raises GuestFailed. Its diffs carry its name."""
    name, guest = params["name"], Guest(module, params)
    if params["state"] != "absent" and not params["xml"]:
        guest.fail_json("guest %s: xml is required unless state is absent." % name)
    dom = domains.get(name)
    result = absent(guest, conn, dom, name) if params["state"] == "absent" else present(guest, conn, dom, name)
    diffs = result.get("diff") or []
    for diff in diffs if isinstance(diffs, list) else [diffs]:
        diff.setdefault("before_header", "guest %s: libvirt's definition" % name)
        diff.setdefault("after_header", "guest %s: the definition to apply" % name)
    return result


def main() -> None:
    per_guest = {
        "name": {"type": "str"},
        "xml": {"type": "str"},
        "reset_nvram": {"type": "bool", "default": False},
        "purge": {"type": "bool", "default": False},
        "owned_paths": {"type": "list", "elements": "str", "default": []},
        "graphics_password": {"type": "str", "no_log": True},
    }
    inherited = {
        "state": {"type": "str", "choices": ["running", "shutdown", "absent"], "default": "running"},
        "autostart": {"type": "bool", "default": False},
        "shutdown_timeout": {"type": "int", "default": 120},
        "force_stop": {"type": "bool", "default": False},
        "allow_restart": {"type": "bool", "default": False},
    }
    suboptions = {key: {k: v for k, v in spec.items() if k != "default"}
                  for key, spec in {**per_guest, **inherited}.items()}
    suboptions["name"]["required"] = True
    module = AnsibleModule(
        argument_spec={
            **per_guest, **inherited,
            "guests": {"type": "list", "elements": "dict", "options": suboptions},
            **URI_OPTION,
        },
        required_one_of=[("name", "guests")],
        mutually_exclusive=[("name", "guests"), ("xml", "guests")],
        supports_check_mode=True,
    )
    guests = entries(module.params)
    names = [g["name"] for g in guests]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        module.fail_json(msg="guests: %s listed more than once; each guest once." % ", ".join(twice))
    if not dx.HAS_LXML:
        if module.check_mode:  # a fresh host, where the host role only predicted the install
            module.exit_json(changed=True, msg="lxml is not installed yet; the guests %s would be defined"
                             % ", ".join(names))
        module.fail_json(msg=missing_required_lib("lxml (Debian: python3-lxml, Arch: python-lxml)"),
                         exception=dx.LXML_IMPORT_ERROR)
    conn = connect(module, module.params["uri"], "the guests %s would be defined" % ", ".join(names))
    try:
        domains = {dom.name(): dom for dom in conn.listAllDomains(0)}
    except libvirt.libvirtError as exc:
        module.fail_json(msg="cannot list libvirt's guests: %s" % exc)
    results, failed = {}, []
    for params in guests:
        try:
            results[params["name"]] = converge_guest(module, conn, domains, params)
        except GuestFailed as exc:
            if module.params["guests"] is None:
                module.fail_json(msg=exc.msg, **exc.extra)
            results[params["name"]] = {"failed": True, "msg": exc.msg, **exc.extra}
            failed.append(exc.msg)
        except libvirt.libvirtError as exc:  # an error no check foresaw: this guest fails alone
            msg = "guest %s: libvirt failed: %s" % (params["name"], exc)
            if module.params["guests"] is None:
                module.fail_json(msg=msg)
            results[params["name"]] = {"failed": True, "msg": msg}
            failed.append(msg)
    if module.params["guests"] is None:
        module.exit_json(**results[names[0]])
    changed = any(r.get("changed") for r in results.values())
    diff = []
    for result in results.values():
        shown = result.pop("diff", None) or []
        diff.extend(shown if isinstance(shown, list) else [shown])
    if failed:
        module.fail_json(msg="%d of %d guests did not converge (the others did):\n%s"
                         % (len(failed), len(guests), "\n".join(failed)), guests=results, changed=changed)
    module.exit_json(changed=changed, guests=results, diff=diff,
                     restart_required=sorted(n for n, r in results.items() if r.get("restart_required")))


if __name__ == "__main__":
    main()
