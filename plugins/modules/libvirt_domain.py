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
    - The names of the guests running with an older definition (the change applies at their next
      boot); with O(guests), each guest's own RV(guests) entry also says so as a bool.
  returned: always
  type: list
  elements: str
  sample: [win11]
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

import ipaddress
import os
import re
import uuid
import xml.etree.ElementTree as ET

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import domain_merge as dx
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import libvirt_common as lc
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.domain_batch import (
    GuestRun,
    argument_spec,
    entries,
    summary,
    twice,
)
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.domain_lifecycle import converge, stop
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.domain_preflight import check_host, check_hugepages
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.errors import KvmlabError
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.guest_files import (
    backup_nvram,
    delete_disks,
    disk_files,
    guard_owned,
    owned_files,
)

UUID_NAMESPACE = uuid.UUID("5b0c7a3e-4f1d-4b8e-9a52-6b7e1f0c2d11")  # kvmlab guests: uuid5(this, name)


def empty_missing_cdroms(run, name: str, root: ET.Element) -> None:
    """A cdrom whose ISO is missing becomes an empty drive, with a warning."""
    for disk in root.findall("devices/disk[@device='cdrom']"):
        source = disk.find("source")
        path = source.get("file") if source is not None else None
        if path and not os.path.exists(path):
            disk.remove(source)
            target = disk.find("target")
            run.warn("guest %s: ISO %s is missing, so cdrom %s is attached empty. Put the image there "
                     "and run again to insert it." % (name, path, target.get("dev") if target is not None else "?"))


def hide_password(text: str) -> str:
    """A console password (libvirt's passwd attribute, or its value in a difference) as ********."""
    text = re.sub(r"""(passwd=)(['"]).*?\2""", r"\1\2********\2", text)
    return re.sub(r"(@passwd: ).*", r"\1'********' -> '********'", text)


def warn_public_console(run, name: str, root: ET.Element) -> None:
    """On every run: a console that listens beyond this host, with or without its password."""
    for graphics in root.findall("devices/graphics"):
        for listen in graphics.findall("listen"):
            try:
                public = not ipaddress.ip_address(listen.get("address") or "").is_loopback
            except ValueError:
                continue
            if public:
                run.warn("guest %s: its %s console listens on %s, reachable from the network %s. Keep it on "
                         "127.0.0.1 and tunnel through SSH unless this is what you want."
                         % (name, graphics.get("type"), listen.get("address"),
                            "behind its password" if graphics.get("passwd") else "without a password"))


def new_result() -> dict:
    return {"changed": False, "actions": [], "differences": [], "restart_required": False}


def absent(run, conn, dom, name: str) -> dict:
    """Stop and undefine the guest; with purge, delete the files it owns."""
    result = new_result()
    if dom is None:
        return result
    libvirt, actions, purge = lc.libvirt, result["actions"], run.params["purge"]
    before = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    disks = disk_files(before)
    if purge:
        guard_owned(conn, name, owned_files(before), run.params["owned_paths"], "purge")
    stop(run, dom, name, actions)
    flags = 0
    if dom.hasManagedSaveImage(0):
        if not purge:
            raise KvmlabError("guest %s has a saved state (managed save); start it, or remove the state with "
                              "`virsh managedsave-remove %s`, or set purge: true." % (name, name), actions=actions)
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    if purge:
        flags |= (libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_TPM
                  | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
    else:
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_KEEP_TPM
    actions.append("undefine")
    if purge:
        actions.extend("delete %s" % d for d in disks)
    if not run.check_mode:
        dom.undefineFlags(flags)
        if purge:
            result["purged"] = delete_disks(conn, disks)
    result["changed"] = True
    result["diff"] = {"before": dx.pretty(before), "after": ""}
    return result


def present(run, conn, dom, name: str) -> dict:
    """Define or redefine the guest from its XML, then converge its lifecycle."""
    params = run.params
    if not params["xml"]:
        raise KvmlabError("guest %s: xml is required unless state is absent." % name)
    root = ET.fromstring(params["xml"])
    if (root.findtext("name") or "").strip() != name:
        raise KvmlabError("guest %s: the xml names the domain %r; name and the xml's <name> must match."
                          % (name, root.findtext("name")))
    empty_missing_cdroms(run, name, root)
    if params["graphics_password"]:
        for graphics in root.findall("devices/graphics"):
            graphics.set("passwd", params["graphics_password"])
    warn_public_console(run, name, root)
    result = new_result()
    if params["state"] == "running" and not (dom is not None and dom.isActive()):
        check_hugepages(name, root)  # before any change
    if dom is None:
        dom = define_new(run, conn, root, result)
    else:
        redefine(run, conn, dom, ET.tostring(root, encoding="unicode"), result)
    converge(run, dom, name, result)
    result["changed"] = bool(result["actions"])
    return result


def define_new(run, conn, root: ET.Element, result: dict):
    """Define a guest libvirt does not have; returns its domain (None in check mode)."""
    name = run.params["name"]
    if root.find("uuid") is None:
        # Deterministic, like the MACs: a guest undefined (keeping its NVRAM and libvirt-managed
        # TPM state, which is filed by uuid) and defined again finds its TPM state again.
        uuid_el = ET.Element("uuid")
        uuid_el.text = str(uuid.uuid5(UUID_NAMESPACE, name))
        root.insert(1, uuid_el)
    desired = ET.tostring(root, encoding="unicode")
    check_host(conn, name, root)
    result["actions"].append("define")
    result["differences"] = ["domain %s: not defined yet, would be defined" % name]
    result["diff"] = {"before": "", "after": dx.pretty(desired)}
    if run.check_mode:
        return None
    try:
        return conn.defineXMLFlags(desired, lc.libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    except lc.libvirt.libvirtError as exc:
        raise KvmlabError("guest %s: libvirt refused the definition: %s" % (name, exc), xml=desired) from None


def redefine(run, conn, dom, desired: str, result: dict) -> None:
    """Redefine a guest whose owned parts differ, merging them into libvirt's XML."""
    libvirt, params, actions, name = lc.libvirt, run.params, result["actions"], run.params["name"]
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
    nvram = dx.nvram_path(current)
    if old_kind != new_kind:
        if not params["reset_nvram"]:
            raise KvmlabError(
                "guest %s: changing its firmware from %s to %s needs a new NVRAM (its enrolled keys and boot "
                "entries are lost). Set reset_nvram: true to do it; the old NVRAM file is backed up first. "
                "Nothing was changed." % (name, old_kind, new_kind), differences=diffs)
        if nvram and os.path.exists(nvram):
            guard_owned(conn, name, [nvram], params["owned_paths"], "reset_nvram")
        merged = dx.replace_os(merged, desired)
        actions.append("reset_nvram")
    check_host(conn, name, ET.fromstring(merged))
    actions.append("redefine" if persistent else "define")
    result["diff"] = {"before": hide_password(dx.pretty(current)), "after": hide_password(dx.pretty(merged))}
    if not run.check_mode:
        # Copy first, define, and only then remove the old NVRAM (libvirt makes the new one from
        # the new template at the next start): a refused definition loses nothing.
        backup = backup_nvram(nvram) if old_kind != new_kind else None
        try:
            conn.defineXMLFlags(merged, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        except libvirt.libvirtError as exc:
            raise KvmlabError("guest %s: libvirt refused the new definition: %s. Nothing was changed. The "
                              "differences it was to repair: %s" % (name, exc, "; ".join(diffs)),
                              xml=hide_password(merged), differences=diffs) from None
        if backup:
            os.remove(nvram)
            result["nvram_backup"] = backup
    if dom.isActive():
        result["restart_required"] = True


def converge_guest(run, conn, domains: dict) -> dict:
    """One guest, by its own options; raises KvmlabError. Its diffs carry its name."""
    name = run.params["name"]
    dom = domains.get(name)
    try:
        result = (absent if run.params["state"] == "absent" else present)(run, conn, dom, name)
    except lc.libvirt.libvirtError as exc:  # an error no check foresaw: this guest fails alone
        raise KvmlabError("guest %s: libvirt failed: %s" % (name, exc)) from None
    diffs = result.get("diff") or []
    for diff in diffs if isinstance(diffs, list) else [diffs]:
        diff.setdefault("before_header", "guest %s: libvirt's definition" % name)
        diff.setdefault("after_header", "guest %s: the definition to apply" % name)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(lc.URI_OPTION),
        required_one_of=[("name", "guests")],
        mutually_exclusive=[("name", "guests"), ("xml", "guests")],
        supports_check_mode=True,
    )
    guests = entries(module.params)
    batch = module.params["guests"] is not None
    names = [g["name"] for g in guests]
    if twice(guests):
        module.fail_json(msg="guests: %s listed more than once; each guest once." % ", ".join(twice(guests)))
    if not dx.HAS_LXML:
        if module.check_mode:  # a fresh host, where the host role only predicted the install
            module.exit_json(changed=True, msg="lxml is not installed yet; the guests %s would be defined"
                             % ", ".join(names))
        module.fail_json(msg=missing_required_lib("lxml (Debian: python3-lxml, Arch: python-lxml)"),
                         exception=dx.LXML_IMPORT_ERROR)
    conn = lc.connect(module, module.params["uri"], "the guests %s would be defined" % ", ".join(names))
    try:
        domains = {dom.name(): dom for dom in conn.listAllDomains(0)}
    except lc.libvirt.libvirtError as exc:
        module.fail_json(msg="cannot list libvirt's guests: %s" % exc)
    results = {}
    for params in guests:
        try:
            results[params["name"]] = converge_guest(GuestRun(params, module.check_mode, module.warn), conn, domains)
        except KvmlabError as exc:
            if not batch:
                module.fail_json(msg=exc.msg, **exc.result)
            results[params["name"]] = {**exc.result, "failed": True, "msg": exc.msg}
    if not batch:
        result = results[names[0]]
        result["restart_required"] = [names[0]] if result["restart_required"] else []
        module.exit_json(**result)
    total = summary(results)
    failed = total.pop("failed")
    if failed:
        module.fail_json(msg="%d of %d guests did not converge (the others did):\n%s"
                         % (len(failed), len(guests), "\n".join(failed)), guests=results, **total)
    module.exit_json(guests=results, **total)


if __name__ == "__main__":
    main()
