#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: libvirt_restore
short_description: Restore a libvirt guest from its backup - disks, NVRAM and TPM state together
version_added: 0.2.0
description:
  - Rebuilds a guest from one backup (default the newest complete one) and the chain it belongs
    to - its disks as they were at that backup (the full backup and its incrementals read as one
    C(qemu-img) chain, written in each disk's own format), its NVRAM file, its TPM state directory
    and its domain definition (same name and UUID) - at the paths the guest had.
  - Every backup of the chain is checked first, and nothing is touched when one fails - a missing or
    incomplete link, a malformed manifest, a file whose size or SHA-256 differs from its manifest, an
    overlay whose backing file is not its parent's, or a disk that fails C(qemu-img check).
  - Never writes over a guest's existing disks, NVRAM or TPM state, or redefines a guest libvirt has,
    unless O(overwrite) is set. Even then each existing file or directory is first renamed aside to
    C(<path>.pre-restore-<UTC time>) (RV(moved_aside)), once the restored copies are completely written
    beside them. A running guest is forced off first (O(overwrite) only), and the kvmlab swtpm service of
    an external TPM is stopped, so that it reads the restored state when the guest starts.
  - The guest's checkpoints are dropped (metadata only), as the restored disks carry no bitmaps; the
    next backup is then a full one.
  - Takes the guest's backup lock, as M(kvmlab.hypervisor.libvirt_backup) does.
author:
  - kvmlab developers (@kvmlab)
extends_documentation_fragment:
  - kvmlab.hypervisor.libvirt
options:
  guest:
    description: The guest's libvirt name, the name of its directory under O(source).
    type: str
    required: true
  backup:
    description:
      - The backup to restore, by name (its directory, such as C(20261207T201500Z)).
      - Default the newest complete one.
    type: str
  source:
    description:
      - The directory of backups, as M(kvmlab.hypervisor.libvirt_backup)'s
        O(kvmlab.hypervisor.libvirt_backup#module:dest).
    type: path
    required: true
  overwrite:
    description: Restore over the guest's existing definition, disks, NVRAM and TPM state, each moved aside first.
    type: bool
    default: false
  start:
    description: Start the guest once it is restored.
    type: bool
    default: true
  timeout:
    description: Seconds the restore may take.
    type: int
    default: 3600
  lock_timeout:
    description: Seconds to wait for a backup or restore of the same guest to finish.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: Checks the chain and reports what would be restored and moved aside; changes nothing.
  diff_mode:
    support: none
    description: A backup or a restore has no before and after to show; the result lists what was written.
"""

EXAMPLES = r"""
- name: Put win11 back as it was at its newest backup, moving its current files aside
  kvmlab.hypervisor.libvirt_restore:
    guest: win11
    source: /mnt/vm/backups
    overwrite: true
"""

RETURN = r"""
backup:
  description: The backup restored, and its chain from the full backup.
  returned: always
  type: dict
  sample: {name: 20261207T201500Z, chain: [20261207T190000Z, 20261207T201500Z]}
restored:
  description: The paths written.
  returned: always
  type: list
  elements: str
moved_aside:
  description: What existed at those paths, and where it was moved.
  returned: always
  type: dict
  sample: {/mnt/vm/win11.qcow2: /mnt/vm/win11.qcow2.pre-restore-20261207T203000Z}
"""

import json
import os
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import backup as bk
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.files import fsync_dir
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.libvirt_common import connect, is_no_such, run_module

try:
    import libvirt
except ImportError:
    libvirt = None

PART = ".kvmlab-restore.part"


def qemu_img(argv: list, deadline: float, what: str) -> str:
    try:
        out = subprocess.run(
            ["qemu-img", *argv],
            capture_output=True,
            text=True,
            timeout=max(deadline - time.monotonic(), 1),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise bk.BackupError("%s did not finish within the timeout." % what) from None
    if out.returncode != 0:
        raise bk.BackupError("%s failed: %s" % (what, (out.stderr or out.stdout).strip()[-500:]))
    return out.stdout


def check_chain(gdir: str, manifests: list[dict], deadline: float) -> None:
    """Each backup's files match the manifest, each overlay's backing file is its parent's, and each disk
    passes qemu-img check."""
    guest = os.path.basename(gdir)
    for i, manifest in enumerate(manifests):
        bk.verify(gdir, manifest, deadline)
        for disk in manifest["disks"]:
            path = os.path.join(gdir, manifest["name"], disk["file"])
            what = "guest %s, backup %s: disk %s" % (guest, manifest["name"], disk["dev"])
            info = json.loads(
                qemu_img(["info", "--output=json", "-f", "qcow2", path], deadline, what + ": qemu-img info")
            )
            want = None if i == 0 else os.path.join("..", manifests[i - 1]["name"], disk["file"])
            if info.get("backing-filename") != want:
                raise bk.BackupError(
                    "%s has the backing file %r, not %r; restore refuses the chain."
                    % (what, info.get("backing-filename"), want)
                )
            qemu_img(["check", "-q", "-f", "qcow2", path], deadline, what + ": qemu-img check")


def lookup(conn, name: str, uuid: str):
    for how, key in ((conn.lookupByName, name), (conn.lookupByUUIDString, uuid)):
        try:
            return how(key)
        except libvirt.libvirtError as exc:
            if not is_no_such(exc):
                raise
    return None


def core(module: AnsibleModule) -> dict:
    p = module.params
    result = {"changed": False, "backup": {}, "restored": [], "moved_aside": {}}
    try:
        gdir = bk.guest_dir(p["source"], p["guest"])
    except bk.BackupError as exc:
        module.fail_json(msg="guest: %s" % exc)
    if not os.path.isdir(gdir):
        module.fail_json(
            msg="guest %s: %s holds no backups of it; give the backup directory as source." % (p["guest"], gdir)
        )
    conn = connect(module, p["uri"], "would restore the guest")
    try:
        if module.check_mode:
            return dict(result, **restore(module, conn, gdir, p, result))
        with bk.Lock(gdir, p["lock_timeout"]):
            return dict(result, **restore(module, conn, gdir, p, result))
    except bk.BackupError as exc:
        module.fail_json(msg=str(exc), **result)
    except (libvirt.libvirtError, OSError) as exc:
        module.fail_json(msg="guest %s: the restore failed: %s" % (p["guest"], exc), **result)
    return result


def pick(gdir: str, guest: str, wanted: str | None) -> str:
    """The backup to restore: the one named, or the newest complete one."""
    complete, incomplete = bk.listing(gdir)
    name = wanted or (complete[-1] if complete else None)
    if name is None:
        raise bk.BackupError(
            "guest %s: %s holds no complete backup; take one with the backup playbook." % (guest, gdir)
        )
    if name not in complete:
        why = "does not exist"
        if name in incomplete or name + bk.PARTIAL in incomplete:
            why = "is incomplete (an interrupted or failed backup)"
        raise bk.BackupError(
            "guest %s, backup %s: it %s; restore one of: %s." % (guest, name, why, ", ".join(complete) or "none")
        )
    return name


def targets_of(gdir: str, top: dict) -> list[tuple]:
    """(kind, path in the backup, path to restore to, manifest record) of each disk, the NVRAM and the TPM state."""
    folder = os.path.join(gdir, top["name"])
    targets = []
    for disk in top["disks"]:
        if disk.get("type") != "file":
            raise bk.BackupError(
                "guest %s, backup %s: disk %s was a block device (%s); restoring onto block devices is not "
                "supported yet - restore it by hand with qemu-img convert."
                % (top["guest"], top["name"], disk["dev"], disk["source"])
            )
        targets.append(("disk", os.path.join(folder, disk["file"]), disk["source"], disk))
    if top.get("nvram"):
        targets.append(("nvram", os.path.join(folder, "nvram.fd"), top["nvram"]["source"], top["nvram"]))
    if top.get("tpm"):
        targets.append(("tpm", os.path.join(folder, "tpm"), top["tpm"]["source"], top["tpm"]))
    return targets


def check_room(manifests: list[dict], targets: list[tuple]) -> None:
    """Each target's directory exists and its filesystem has room for what goes there."""
    top = manifests[-1]
    need: dict = {}
    for kind, src, target, rec in targets:
        if kind == "disk":  # at most the sum of the chain's files of that disk
            size = sum(d["size"] for m in manifests for d in m["disks"] if d["dev"] == rec["dev"])
        else:
            size = bk.tree_bytes(src) if kind == "tpm" else rec["size"]
        folder = os.path.dirname(target)
        if not os.path.isdir(folder):
            raise bk.BackupError(
                "guest %s, backup %s: %s's directory %s does not exist; make it (the storage role does) and restore "
                "again." % (top["guest"], top["name"], target, folder)
            )
        dev = os.stat(folder).st_dev
        need[dev] = (folder, need.get(dev, ("", 0))[1] + size)
    for folder, size in need.values():
        bk.need_space(top["guest"], "restoring backup %s" % top["name"], folder, size)


def remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        bk.remove_tree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def write_part(target: tuple, part: str, deadline: float, what: str) -> None:
    """One restored file or directory, completely written beside its target."""
    kind, src, _path, rec = target
    remove(part)
    if kind == "disk":
        qemu_img(
            ["convert", "-f", "qcow2", "-O", rec["format"], src, part], deadline, what + ": writing disk " + rec["dev"]
        )
        os.chown(part, rec["source_uid"], rec["source_gid"])
        os.chmod(part, rec["source_mode"])
        with open(part, "rb+") as f:
            os.fsync(f.fileno())
    elif kind == "nvram":
        bk.copy_file(src, part)
    else:
        bk.copy_tree(src, part)
        os.chown(part, rec["uid"], rec["gid"])
        os.chmod(part, rec["mode"])


def swap_in(module, dom, top: dict, targets: list, aside: dict) -> None:
    """Write every part, then stop the guest, move what it has aside and rename the parts into place."""
    guest, what = top["guest"], "guest %s, backup %s" % (top["guest"], top["name"])
    parts = []
    try:
        for target in targets:
            parts.append(target[2] + PART)
            write_part(target, target[2] + PART, top["deadline"], what)
        # Everything restored is on disk: now the guest goes, and what it had is moved aside.
        if dom is not None and dom.isActive():
            module.warn("%s: the guest was forced off to restore it (kvmlab_restore_overwrite)." % what)
            dom.destroy()
        if top.get("tpm") and top["tpm"]["type"] == "external":
            # Its swtpm must read the restored state when the guest next connects (the socket stays).
            subprocess.run(
                ["systemctl", "stop", "kvmlab-swtpm-%s.service" % guest], capture_output=True, timeout=60, check=False
            )
        put_in_place(aside, [(part, t[2]) for t, part in zip(targets, parts, strict=True)], what)
        parts = []
    finally:
        for part in parts:
            remove(part)


def put_in_place(aside: dict, renames: list, what: str) -> None:
    """What the guest has moved aside, then each written part renamed onto its target. Should a rename
    fail halfway, the renames done are undone: the guest keeps all of its own files, none restored."""
    done = []
    try:
        for path, moved in list(aside.items()) + renames:
            os.rename(path, moved)
            done.append((path, moved))
            fsync_dir(os.path.dirname(moved))
    except OSError as exc:
        for path, moved in reversed(done):
            os.rename(moved, path)
        raise bk.BackupError(
            "%s: putting %s in place failed (%s); the guest's own files were put back and nothing was "
            "restored. Fix the cause and run the restore again." % (what, exc.filename, exc.strerror)
        ) from None


def redefine(conn, dom, top: dict, start: bool) -> None:
    """The guest's definition from the backup; its checkpoints dropped (the restored disks have no bitmaps)."""
    if dom is not None:
        for cp in dom.listAllCheckpoints(0):
            cp.delete(libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY)
        if dom.UUIDString() != top["uuid"]:
            dom.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM
                | libvirt.VIR_DOMAIN_UNDEFINE_KEEP_TPM
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            )
    with open(os.path.join(top["folder"], "domain.xml"), encoding="utf-8") as f:
        dom = conn.defineXML(f.read())
    if start:
        dom.create()


def restore(module, conn, gdir: str, p: dict, result: dict) -> dict:
    guest = p["guest"]
    deadline = time.monotonic() + p["timeout"]
    name = pick(gdir, guest, p["backup"])
    manifests = bk.chain(gdir, name)
    check_chain(gdir, manifests, deadline)
    # The manifest, with where it is and the restore's deadline.
    top = dict(manifests[-1], folder=os.path.join(gdir, name), deadline=deadline)
    result["backup"] = {"name": name, "chain": [m["name"] for m in manifests]}
    targets = targets_of(gdir, top)
    dom = lookup(conn, guest, top["uuid"])
    existing = [t[2] for t in targets if os.path.lexists(t[2])]
    if (dom is not None or existing) and not p["overwrite"]:
        what = (["the guest's definition in libvirt"] if dom is not None else []) + existing
        raise bk.BackupError(
            "guest %s, backup %s: restoring would replace %s; set kvmlab_restore_overwrite: true (the module's "
            "overwrite) to "
            "move them aside and restore. Nothing was changed." % (guest, name, ", ".join(what))
        )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = {path: "%s.pre-restore-%s" % (path, stamp) for path in existing}
    result.update(restored=[t[2] for t in targets], changed=True)
    if module.check_mode:
        return dict(result, moved_aside=aside)
    check_room(manifests, targets)
    swap_in(module, dom, top, targets, aside)
    result["moved_aside"] = aside
    redefine(conn, dom, top, p["start"])
    return result


def main() -> None:
    run_module(
        core,
        {
            "guest": {"type": "str", "required": True},
            "backup": {"type": "str"},
            "source": {"type": "path", "required": True},
            "overwrite": {"type": "bool", "default": False},
            "start": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 3600},
            "lock_timeout": {"type": "int", "default": 60},
        },
    )


if __name__ == "__main__":
    main()
