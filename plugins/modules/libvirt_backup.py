#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: libvirt_backup
short_description: Back up libvirt guests with their NVRAM and TPM state, full or incremental
version_added: 0.2.0
description:
  - Backs up each listed guest into O(dest)/<guest>/<UTC time>/ - its disks as qcow2 files, its
    NVRAM file, its TPM state directory, its inactive domain XML and a C(manifest.json) with every
    file's size and SHA-256, the chain of backups and the libvirt and QEMU versions.
  - A running or paused guest is backed up with libvirt's backup API in push mode. A running guest
    is paused from just before the backup starts until its NVRAM and TPM state are copied (a few
    milliseconds), so disks, NVRAM and TPM state are one point in time; the disks are then copied
    while it runs. Each such backup makes a libvirt checkpoint (a persistent qcow2 bitmap), and the
    next one copies only what changed since (an incremental backup, a qcow2 overlay on the one
    before), up to O(max_incrementals) in a chain; then a new full backup starts a new chain.
  - A shut-off guest is copied with C(qemu-img convert), always as a full backup (its disks are
    locked against a start meanwhile by QEMU's image locks).
  - A full backup is taken instead of an incremental one, with a warning, when the guest was
    renamed or redefined (another UUID), its disks changed, the checkpoint of its last backup is
    gone, or a disk is not qcow2.
  - Everything is written into <name>.partial/ and renamed once the disks passed C(qemu-img check)
    and the manifest is on disk, so a run killed with SIGKILL or a libvirtd restart leaves only an
    incomplete directory, never offered to restore and removed by the next backup of that guest.
  - Before anything is written, the destination must have room for the estimate (C(qemu-img measure)
    for a full backup, the checkpoint's changed bytes for an incremental one) and 5 % plus 64 MiB.
  - One backup or restore of a guest at a time (a lock file in its directory); a second waits up to
    O(lock_timeout) seconds, then is refused.
  - After a backup, the oldest chains beyond O(keep) are removed, and the guest's older kvmlab
    checkpoints are deleted. Nothing else in O(dest) is touched.
author:
  - kvmlab developers (@kvmlab)
extends_documentation_fragment:
  - kvmlab.hypervisor.libvirt
options:
  guests:
    description: The guests to back up, by libvirt name; empty for every persistent guest libvirt defines.
    type: list
    elements: str
    default: []
  tpm_state_dirs:
    description:
      - The state directory of each external TPM (C(<backend type='external'>)), by guest name. Found
        by itself for the swtpm units the guest role installs (C(kvmlab-swtpm-<name>.service), read
        over D-Bus); give it for an swtpm run by other means. A guest with an external TPM whose state
        directory is unknown is refused.
    type: dict
    default: {}
  dest:
    description:
      - The directory that holds one directory of backups per guest.
      - Made 0711 if missing, so that QEMU can reach the disk targets in it; the files are 0600.
    type: path
    required: true
  mode:
    description: C(auto) takes an incremental backup where one can be, C(full) always a full one.
    type: str
    choices: [auto, full]
    default: auto
  keep:
    description: How many chains (a full backup and its incrementals) to keep per guest, the newest.
    type: int
    default: 2
  max_incrementals:
    description: How many incremental backups follow a full one before the next full one.
    type: int
    default: 6
  timeout:
    description: Seconds one guest's backup may take; past them its job is aborted and the guest is failed.
    type: int
    default: 3600
  lock_timeout:
    description: Seconds to wait for another backup or restore of the same guest to finish.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: Reports each guest's backup kind and estimated size and writes nothing.
  diff_mode:
    support: none
    description: A backup or a restore has no before and after to show; the result lists what was written.
"""

EXAMPLES = r"""
- name: Back up win11 with its NVRAM and TPM state under /mnt/vm/backups
  kvmlab.hypervisor.libvirt_backup:
    guests: [win11]
    dest: /mnt/vm/backups
"""

RETURN = r"""
backups:
  description: Per guest, the backup taken (or that would be, in check mode).
  returned: always
  type: dict
  sample:
    win11: {name: 20261207T201500Z, kind: incremental, parent: 20261207T190000Z, bytes: 11403264,
            path: /mnt/vm/backups/win11/20261207T201500Z, seconds: 1.2, reason: null}
removed:
  description: The directories removed - incomplete ones of interrupted runs, and chains beyond O(keep).
  returned: always
  type: list
  elements: str
"""

import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import backup as bk
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.files import fsync_dir, write_file
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.libvirt_common import connect, is_no_such, run_module

try:
    import libvirt
except ImportError:
    libvirt = None

CHECKPOINT_PREFIX = "kvmlab-"
PAUSED = ".paused-by-kvmlab"


def version(number: int) -> str:
    return "%d.%d.%d" % (number // 1000000, number // 1000 % 1000, number % 1000)


def bus_path(unit: str) -> str:
    """systemd's D-Bus object path of a unit (every byte but [A-Za-z0-9] as _xx)."""
    return "/org/freedesktop/systemd1/unit/" + "".join(
        chr(b) if chr(b).isascii() and chr(b).isalnum() else "_%02x" % b for b in unit.encode()
    )


def external_tpm_dir(name: str) -> str | None:
    """The --tpmstate dir= of kvmlab-swtpm-<name>.service, read as its exact argv over D-Bus."""
    try:
        out = subprocess.run(
            [
                "busctl",
                "--json=short",
                "get-property",
                "org.freedesktop.systemd1",
                bus_path("kvmlab-swtpm-%s.service" % name),
                "org.freedesktop.systemd1.Service",
                "ExecStart",
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        data = json.loads(out.stdout or b"{}").get("data") or []
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    for entry in data:
        argv = entry[1] if len(entry) > 1 else []
        for i, arg in enumerate(argv[:-1]):
            if arg == "--tpmstate" and argv[i + 1].startswith("dir="):
                return argv[i + 1][4:].split(",mode=", 1)[0]
    return None


def parts(dom, xml: ET.Element, tpm_state_dir: str | None, warnings: list) -> dict:
    """What a guest's backup holds: its disks (file and block), NVRAM file and TPM state directory."""
    name = dom.name()
    disks, skipped = [], []
    for disk in xml.findall("devices/disk"):
        dev = (disk.find("target").get("dev") if disk.find("target") is not None else None) or ""
        source = disk.find("source")
        path = None if source is None else (source.get("file") or source.get("dev"))
        if disk.get("device") != "disk" or path is None:
            skipped.append(dev)
            continue
        if disk.get("type") not in ("file", "block") or not bk.DEV_RE.match(dev):
            warnings.append(
                "guest %s: disk %s (type %s) is not backed up; only file and block disks are."
                % (name, dev, disk.get("type"))
            )
            skipped.append(dev)
            continue
        driver = disk.find("driver")
        disks.append(
            {
                "dev": dev,
                "source": path,
                "type": disk.get("type"),
                "format": (driver.get("type") if driver is not None else None) or "raw",
            }
        )
    if not disks:
        raise bk.BackupError("guest %s: it has no file or block disk to back up." % name)
    nvram = xml.findtext("os/nvram")
    tpm = None
    backend = xml.find("devices/tpm/backend")
    if backend is not None and backend.get("type") == "emulator":
        tpm = {"type": "emulator", "source": "/var/lib/libvirt/swtpm/%s" % dom.UUIDString()}
    elif backend is not None and backend.get("type") == "external":
        state = tpm_state_dir or external_tpm_dir(name)
        if not state:
            raise bk.BackupError(
                "guest %s: its external TPM's state directory is unknown (no kvmlab-swtpm-%s.service); "
                "give it as tpm_state_dir of the guest." % (name, name)
            )
        tpm = {"type": "external", "source": state}
    if tpm is not None and not os.path.isdir(tpm["source"]):
        if tpm["type"] == "external" or dom.isActive():
            raise bk.BackupError(
                "guest %s: its TPM state directory %s does not exist; a backup without it would not "
                "restore the TPM." % (name, tpm["source"])
            )
        tpm = None  # libvirt makes an emulator TPM's state at the guest's first start
    return {"disks": disks, "skipped": skipped, "nvram": nvram, "tpm": tpm}


def checkpoint_names(dom) -> list[str]:
    """The guest's kvmlab checkpoints, oldest first."""
    try:
        cps = dom.listAllCheckpoints(0)
    except libvirt.libvirtError:
        return []
    named = []
    for cp in cps:
        root = ET.fromstring(cp.getXMLDesc(0))
        named.append((int(root.findtext("creationTime") or 0), cp.getName()))
    return [
        n
        for _t, n in sorted(named)
        if n.startswith(CHECKPOINT_PREFIX) and bk.NAME_RE.match(n[len(CHECKPOINT_PREFIX) :])
    ]


def changed_bytes(dom, checkpoint: str) -> int | None:
    try:
        root = ET.fromstring(dom.checkpointLookupByName(checkpoint).getXMLDesc(libvirt.VIR_DOMAIN_CHECKPOINT_XML_SIZE))
        return sum(int(d.get("size") or 0) for d in root.findall("disks/disk"))
    except (libvirt.libvirtError, ValueError):
        return None


def measure(disk: dict, seconds: float) -> int:
    out = subprocess.run(
        ["qemu-img", "measure", "-U", "--output=json", "-O", "qcow2", "-f", disk["format"], disk["source"]],
        capture_output=True,
        text=True,
        timeout=seconds,
        check=False,
    )
    if out.returncode != 0:
        raise bk.BackupError(
            "disk %s (%s): qemu-img measure failed: %s" % (disk["dev"], disk["source"], out.stderr.strip()[-500:])
        )
    return int(json.loads(out.stdout)["required"])


def run(argv: list, seconds: float, what: str) -> None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=max(seconds, 1), check=False)
    except subprocess.TimeoutExpired:
        raise bk.BackupError("%s did not finish within the timeout." % what) from None
    if out.returncode != 0:
        raise bk.BackupError("%s failed: %s" % (what, (out.stderr or out.stdout).strip()[-500:]))


def base(dom, gdir: str, p: dict, online: bool, params: dict) -> tuple[dict | None, str | None]:
    """(the backup an incremental one builds on, or None; why a full backup is taken instead)."""
    name, warnings = dom.name(), params["warnings"]
    complete = bk.listing(gdir)[0]
    for full, why in (
        (not complete, "the first backup"),
        (params["mode"] == "full", "mode full"),
        (any(d["format"] != "qcow2" for d in p["disks"]), "a disk is not qcow2 (no checkpoint)"),
        (not online, "the guest is not running"),
    ):
        if full:
            return None, why
    try:
        last = bk.read_manifest(gdir, complete[-1])
        length = len(bk.chain(gdir, last["name"], complete))
    except bk.BackupError as exc:
        warnings.append("%s; taking a full backup." % exc)
        return None, "the last chain is broken"
    reason, warn = None, True
    if last.get("uuid") != dom.UUIDString():
        reason = "the guest was redefined or renamed since backup %s (UUID %s, was %s)" % (
            last["name"],
            dom.UUIDString(),
            last.get("uuid"),
        )
    elif [(d["dev"], d["source"]) for d in last["disks"]] != [(d["dev"], d["source"]) for d in p["disks"]]:
        reason = "its disks changed since backup %s" % last["name"]
    elif not last.get("checkpoint") or last["checkpoint"] not in checkpoint_names(dom):
        reason, warn = "the checkpoint of backup %s is gone" % last["name"], bool(last.get("checkpoint"))
    elif length > params["max_incrementals"]:
        reason, warn = "its chain has %d incremental backups" % (length - 1), False
    if reason is None:
        return last, None
    if warn:
        warnings.append("guest %s: %s; taking a full backup." % (name, reason))
    return None, reason


def plan(conn, spec: dict, dest: str, params: dict) -> dict:
    """What one guest's backup is: kind, parent, reason, estimate (BackupError if it cannot be)."""
    name = spec["name"]
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if is_no_such(exc):
            raise bk.BackupError(
                "guest %s: libvirt has no such guest; back up guests libvirt defines." % name
            ) from None
        raise
    state = dom.state()[0]
    online = state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED)
    live = ET.fromstring(dom.XMLDesc(0))
    p = parts(dom, live, spec.get("tpm_state_dir"), params["warnings"])
    gdir = bk.guest_dir(dest, name)
    parent, reason = base(dom, gdir, p, online, params)
    # An incremental backup needs about what changed since its parent's checkpoint, a full one
    # what qemu-img measure says a copy of each disk takes.
    estimate = changed_bytes(dom, parent["checkpoint"]) if parent is not None else None
    if estimate is None:
        estimate = sum(measure(d, params["timeout"]) for d in p["disks"])
    estimate += sum(os.path.getsize(x) for x in [p["nvram"]] if x and os.path.exists(x))
    estimate += bk.tree_bytes(p["tpm"]["source"]) if p["tpm"] else 0
    return {
        "dom": dom,
        "name": name,
        "gdir": gdir,
        "online": online,
        "state": state,
        "parts": p,
        "parent": parent,
        "reason": reason,
        "estimate": estimate,
        "kind": "incremental" if parent is not None else "full",
    }


def backup_xml(pl: dict, folder: str) -> tuple[str, str | None]:
    root = ET.Element("domainbackup")
    if pl["parent"] is not None:
        ET.SubElement(root, "incremental").text = pl["parent"]["checkpoint"]
    disks = ET.SubElement(root, "disks")
    chk = ET.Element("domaincheckpoint")
    ET.SubElement(chk, "name").text = pl["checkpoint"]
    cdisks = ET.SubElement(chk, "disks")
    wanted = {d["dev"] for d in pl["parts"]["disks"]}
    for d in pl["parts"]["disks"]:
        disk = ET.SubElement(disks, "disk", name=d["dev"], backup="yes", type="file")
        ET.SubElement(disk, "driver", type="qcow2")
        ET.SubElement(disk, "target", file=os.path.join(folder, d["dev"] + ".qcow2"))
        ET.SubElement(cdisks, "disk", name=d["dev"], checkpoint="bitmap")
    for dev in pl["parts"]["skipped"]:
        if dev and dev not in wanted:
            ET.SubElement(disks, "disk", name=dev, backup="no")
            ET.SubElement(cdisks, "disk", name=dev, checkpoint="no")
    with_checkpoint = pl["checkpoint"] is not None
    return ET.tostring(root, encoding="unicode"), (ET.tostring(chk, encoding="unicode") if with_checkpoint else None)


def wait_job(dom, deadline: float, name: str) -> None:
    while True:
        try:
            stats = dom.jobStats(0)
        except libvirt.libvirtError as exc:
            raise bk.BackupError("guest %s: its backup job was lost (%s)." % (name, exc)) from None
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            break
        if time.monotonic() > deadline:
            try:
                dom.abortJob()
            except libvirt.libvirtError:
                pass
            raise bk.BackupError("guest %s: its backup job did not finish within the timeout; it was aborted." % name)
        time.sleep(0.25)
    try:
        done = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    except libvirt.libvirtError as exc:
        raise bk.BackupError("guest %s: its backup job's result is unknown (%s)." % (name, exc)) from None
    if done.get("type") != libvirt.VIR_DOMAIN_JOB_COMPLETED or done.get("success") is False:
        raise bk.BackupError("guest %s: its backup job failed (%s)." % (name, done.get("errmsg", "no reason given")))


def copy_state(pl: dict, folder: str) -> dict:
    """NVRAM and TPM state into the backup (the guest paused or off); their manifest entries."""
    out = {"nvram": None, "tpm": None}
    nvram = pl["parts"]["nvram"]
    if nvram and os.path.exists(nvram):
        bk.copy_file(nvram, os.path.join(folder, "nvram.fd"))
        out["nvram"] = ("nvram.fd", nvram)
    tpm = pl["parts"]["tpm"]
    if tpm:
        files = bk.copy_tree(tpm["source"], os.path.join(folder, "tpm"))
        out["tpm"] = files
    return out


def copy_online(dom, pl: dict, folder: str, deadline: float) -> dict:
    """A running or paused guest's disks through libvirt's backup job (push mode), its NVRAM and TPM
    state copied while the guest is paused at the backup's point in time."""
    if pl["parent"] is not None:  # each disk's overlay on its parent's copy
        for d in pl["parts"]["disks"]:
            target = os.path.join(folder, d["dev"] + ".qcow2")
            backing = os.path.join("..", pl["parent"]["name"], d["dev"] + ".qcow2")
            run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing, target],
                deadline - time.monotonic(),
                "guest %s: creating the overlay of disk %s" % (pl["name"], d["dev"]),
            )
            os.chmod(target, 0o600)
    bx, cx = backup_xml(pl, folder)
    flags = libvirt.VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL if pl["parent"] is not None else 0
    paused = dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    if paused:  # the marker tells the next run to resume the guest if this one is killed meanwhile
        with open(os.path.join(folder, PAUSED), "w", encoding="utf-8"):
            pass
        dom.suspend()
    try:
        dom.backupBegin(bx, cx, flags)
        pl["created_checkpoint"] = cx is not None
        state = copy_state(pl, folder)
    finally:
        if paused:
            dom.resume()
            os.unlink(os.path.join(folder, PAUSED))
    wait_job(dom, deadline, pl["name"])
    return state


def copy_offline(pl: dict, folder: str, deadline: float) -> dict:
    """A shut-off guest's disks with qemu-img convert (its image locks keep the guest from starting meanwhile)."""
    for d in pl["parts"]["disks"]:
        target = os.path.join(folder, d["dev"] + ".qcow2")
        run(
            ["qemu-img", "convert", "-O", "qcow2", "-f", d["format"], d["source"], target],
            deadline - time.monotonic(),
            "guest %s: copying disk %s" % (pl["name"], d["dev"]),
        )
    return copy_state(pl, folder)


def take(module, conn, pl: dict, params: dict) -> dict:
    """One guest's backup, written into <name>.partial and renamed when complete."""
    dom, name, gdir = pl["dom"], pl["name"], pl["gdir"]
    start = time.monotonic()
    deadline = start + params["timeout"]
    bname = bk.new_name(gdir)
    folder = os.path.join(gdir, bname + bk.PARTIAL)
    os.mkdir(folder, 0o711)
    os.chmod(folder, 0o711)  # QEMU writes the disk targets; the state files stay 0600
    can_checkpoint = pl["online"] and all(d["format"] == "qcow2" for d in pl["parts"]["disks"])
    pl.update(
        checkpoint=CHECKPOINT_PREFIX + bname if can_checkpoint else None,
        created_checkpoint=False,
        bname=bname,
        folder=folder,
        deadline=deadline,
        inactive=dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE),
    )
    try:
        state = copy_online(dom, pl, folder, deadline) if pl["online"] else copy_offline(pl, folder, deadline)
        manifest = write_manifest(module, conn, pl, state)
        os.rename(folder, os.path.join(gdir, bname))
        fsync_dir(gdir)
    except Exception:
        if pl["created_checkpoint"]:
            try:
                dom.checkpointLookupByName(pl["checkpoint"]).delete(0)
            except libvirt.libvirtError:
                pass
        raise
    if pl["checkpoint"]:
        for old in checkpoint_names(dom):
            if old != pl["checkpoint"]:
                try:
                    dom.checkpointLookupByName(old).delete(0)
                except libvirt.libvirtError as exc:
                    params["warnings"].append("guest %s: checkpoint %s not deleted: %s" % (name, old, exc))
    return {
        "name": bname,
        "kind": pl["kind"],
        "parent": pl["parent"]["name"] if pl["parent"] else None,
        "path": os.path.join(gdir, bname),
        "reason": pl["reason"],
        "seconds": round(time.monotonic() - start, 2),
        "bytes": sum(r["size"] for r in bk.records(manifest)),
    }


def write_manifest(module, conn, pl: dict, state: dict) -> dict:
    """The domain XML, each disk checked, and the manifest - written last, flushed to disk."""
    dom, name, bname, folder, deadline = pl["dom"], pl["name"], pl["bname"], pl["folder"], pl["deadline"]
    write_file(module, os.path.join(folder, "domain.xml"), pl["inactive"], 0o600)  # it holds secrets
    disks = []
    for d in pl["parts"]["disks"]:
        path = os.path.join(folder, d["dev"] + ".qcow2")
        run(
            ["qemu-img", "check", "-q", path],
            deadline - time.monotonic(),
            "guest %s: qemu-img check of disk %s's backup" % (name, d["dev"]),
        )
        rec = bk.file_record(path, d["dev"] + ".qcow2", d["source"], deadline)
        src = os.stat(d["source"])
        rec.update(
            dev=d["dev"],
            format=d["format"],
            type=d["type"],
            source_mode=src.st_mode & 0o7777,
            source_uid=src.st_uid,
            source_gid=src.st_gid,
        )
        disks.append(rec)
    tpm = None
    if state["tpm"] is not None:
        tpm = {
            "type": pl["parts"]["tpm"]["type"],
            "source": pl["parts"]["tpm"]["source"],
            "files": [
                bk.file_record(os.path.join(folder, "tpm", rel), os.path.join("tpm", rel), src, deadline)
                for src, rel in state["tpm"]
            ],
        }
        st = os.stat(pl["parts"]["tpm"]["source"])
        tpm.update(mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid)
    manifest = {
        "format": bk.FORMAT,
        "guest": name,
        "name": bname,
        "uuid": dom.UUIDString(),
        "kind": pl["kind"],
        "parent": pl["parent"]["name"] if pl["parent"] else None,
        "chain": pl["parent"]["chain"] if pl["parent"] else bname,
        "checkpoint": pl["checkpoint"],
        "state_at_backup": "running" if pl["online"] else "shut off",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "libvirt": version(conn.getLibVersion()),
        "qemu": version(conn.getVersion()),
        "disks": disks,
        "nvram": bk.file_record(os.path.join(folder, "nvram.fd"), "nvram.fd", state["nvram"][1], deadline)
        if state["nvram"]
        else None,
        "tpm": tpm,
        "domain_xml": bk.file_record(os.path.join(folder, "domain.xml"), "domain.xml"),
    }
    write_file(module, os.path.join(folder, bk.MANIFEST), json.dumps(manifest, indent=1, sort_keys=True), 0o600)
    return manifest


def prune(gdir: str, keep: int) -> list[str]:
    """Remove the chains older than the newest `keep` (complete backups only, by their manifests)."""
    complete = bk.listing(gdir)[0]
    manifests = {}
    for n in complete:
        try:
            manifests[n] = bk.read_manifest(gdir, n)
        except bk.BackupError:  # not removed: what cannot be read is not known to be a chain's
            continue
    complete = [n for n in complete if n in manifests]
    fulls = [n for n in complete if manifests[n]["kind"] == "full"]
    old = set(fulls[:-keep]) if keep > 0 else set()
    removed = []
    for n in complete:
        if manifests[n].get("chain") in old:
            bk.remove_tree(os.path.join(gdir, n))
            removed.append(os.path.join(gdir, n))
    return removed


def busy(dom) -> bool:
    try:
        return dom.jobStats(0).get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE
    except libvirt.libvirtError:
        return False


def backup_one(module, conn, spec: dict, params: dict, result: dict) -> None:
    """One guest: planned (check mode), or backed up under its lock after the leftovers of killed runs are gone."""
    name, dest = spec["name"], params["dest"]
    gdir = bk.guest_dir(dest, name)
    if module.check_mode:
        pl = plan(conn, spec, dest, params)
        result["backups"][name] = {
            "kind": pl["kind"],
            "parent": (pl["parent"] or {}).get("name"),
            "reason": pl["reason"],
            "estimate": pl["estimate"],
        }
        result["changed"] = True
        return
    # Refused before anything is written, even the guest's directory: the space of dest, or of
    # its nearest existing parent.
    probe = dest
    while not os.path.isdir(probe):
        probe = os.path.dirname(probe)
    pl = plan(conn, spec, dest, params)
    bk.need_space(name, "a %s backup" % pl["kind"], probe, pl["estimate"])
    os.makedirs(dest, 0o711, exist_ok=True)
    with bk.Lock(gdir, params["lock_timeout"]):
        # A backup job of a run killed meanwhile goes on writing into its .partial directory.
        deadline = time.monotonic() + params["lock_timeout"]
        while busy(conn.lookupByName(name)):
            if time.monotonic() > deadline:
                raise bk.BackupError(
                    "guest %s: a libvirt job (a backup of an interrupted run?) is still running on it "
                    "after %d s; wait for it, or end it with virsh domjobabort." % (name, params["lock_timeout"])
                )
            time.sleep(0.5)
        for entry in bk.listing(gdir)[1]:
            dom = conn.lookupByName(name)
            if os.path.exists(os.path.join(gdir, entry, PAUSED)) and dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
                params["warnings"].append("guest %s: resumed; a killed backup run had paused it." % name)
            bk.remove_tree(os.path.join(gdir, entry))
            result["removed"].append(os.path.join(gdir, entry))
            params["warnings"].append(
                "guest %s: removed the incomplete backup %s of an interrupted or failed run." % (name, entry)
            )
        pl = plan(conn, spec, dest, params)
        bk.need_space(name, "a %s backup" % pl["kind"], dest, pl["estimate"])
        result["backups"][name] = take(module, conn, pl, params)
        result["changed"] = True
        result["removed"] += prune(gdir, params["keep"])


def core(module: AnsibleModule) -> dict:
    params = dict(module.params, warnings=[])
    result = {"changed": False, "backups": {}, "removed": []}
    for field in ("keep", "max_incrementals", "timeout", "lock_timeout"):
        if params[field] < (1 if field in ("keep", "timeout") else 0):
            module.fail_json(msg="%s: %d is too small; give a positive number." % (field, params[field]))
    names = list(params["guests"])
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        module.fail_json(msg="guests: %s listed twice; list each guest once." % ", ".join(dupes))
    dest = params["dest"]
    if os.path.exists(dest) and not os.path.isdir(dest):
        module.fail_json(msg="dest: %s is not a directory; choose a directory for the backups." % dest)
    conn = connect(module, params["uri"], "would back up the guests")
    if not names:
        names = sorted(d.name() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT))
    unknown = sorted(set(params["tpm_state_dirs"]) - set(names))
    if unknown:
        module.fail_json(
            msg="tpm_state_dirs: %s is not among the guests to back up; name guests of guests." % ", ".join(unknown)
        )
    errors = []
    for spec in ({"name": n, "tpm_state_dir": params["tpm_state_dirs"].get(n)} for n in names):
        try:
            backup_one(module, conn, spec, params, result)
        except bk.BackupError as exc:
            errors.append(str(exc))
        except (libvirt.libvirtError, OSError) as exc:
            errors.append("guest %s: the backup failed: %s" % (spec["name"], exc))
    for warning in dict.fromkeys(params["warnings"]):  # plan() runs twice: before and under the lock
        module.warn(warning)
    if errors:
        module.fail_json(msg="\n".join(errors), **result)
    return result


def main() -> None:
    run_module(
        core,
        {
            "guests": {"type": "list", "elements": "str", "default": []},
            "tpm_state_dirs": {"type": "dict", "default": {}},
            "dest": {"type": "path", "required": True},
            "mode": {"type": "str", "choices": ["auto", "full"], "default": "auto"},
            "keep": {"type": "int", "default": 2},
            "max_incrementals": {"type": "int", "default": 6},
            "timeout": {"type": "int", "default": 3600},
            "lock_timeout": {"type": "int", "default": 60},
        },
    )


if __name__ == "__main__":
    main()
