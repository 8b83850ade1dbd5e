# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A btrfs subvolume for VM storage, for kvmlab.hypervisor.vm_storage (and the btrfs_subvol and
nodatacow modules): the filesystem found and checked, the subvolume made at its top level, its
fstab line and mount, and nodatacow on the mount point. Everything is checked before anything
changes; every failure raises BtrfsError with the field and the fix."""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile

from ansible_collections.kvmlab.hypervisor.plugins.module_utils.files import write_file
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.fsflags import FS_NOCOW_FL, get_flags, set_flags

# The suboptions of vm_storage's `subvolume` (documented in the kvmlab.hypervisor.storage fragment).
SUBVOLUME_OPTIONS = {
    "name": {"type": "str", "required": True},
    "device": {"type": "str", "default": ""},
    "mount_point": {"type": "path", "required": True},
    "mount_options": {"type": "list", "elements": "str", "default": []},
    "nodatacow": {"type": "bool", "default": True},
}

BTRFS_FIRST_FREE_OBJECTID = 256  # inode number of every subvolume's root directory
FSTAB = "/etc/fstab"
# One mount option: no blank (it would split the fstab line), comma (another option), backslash
# or quote (fstab and mount(8) escapes), nor a control character.
MOUNT_OPTION = re.compile(r"[^\s,\\\"'\x00-\x1f\x7f]+")
SUBVOLUME_NAME = MOUNT_OPTION
OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


class BtrfsError(Exception):
    """A spec or a host no subvolume can be made on; the message names the field and the fix."""

    def __init__(self, msg: str, **details):
        super().__init__(msg)
        self.details = details


FIELDS = {key: "subvolume." + key for key in SUBVOLUME_OPTIONS}


def validate(spec: dict, fields: dict | None = None) -> None:
    """Raises BtrfsError on the first field of `spec` no fstab line or mount can hold; `fields`
    names the fields in the message (the module's options by default, a role's variables)."""
    label = fields or FIELDS
    name, point = spec["name"], spec["mount_point"]
    if not isinstance(name, str) or name in (".", "..") or "/" in name or not SUBVOLUME_NAME.fullmatch(name):
        raise BtrfsError("%s: %r must be one subvolume name, without slashes, blanks, commas, quotes or "
                         "backslashes, such as @vm." % (label["name"], name))
    if not isinstance(point, str) or not os.path.isabs(point) or os.path.normpath(point) != point or point == "/":
        raise BtrfsError("%s: %r must be an absolute, normalised path other than /, such as /mnt/vm."
                         % (label["mount_point"], point))
    if re.search(r"[\x00-\x1f\x7f]", point):
        raise BtrfsError("%s: %r holds a control character, which no fstab line can hold; name another directory."
                         % (label["mount_point"], point))
    options = spec["mount_options"]
    for option in options if isinstance(options, list) else [options]:
        if not isinstance(option, str) or not MOUNT_OPTION.fullmatch(option):
            raise BtrfsError("%s: %r is not one mount option (no blanks, commas, quotes, backslashes or control "
                             "characters); give each option as its own item." % (label["mount_options"], option))
        if option.split("=", 1)[0] in ("subvol", "subvolid"):
            raise BtrfsError("%s: %r would mount another subvolume; name the subvolume in %s only."
                             % (label["mount_options"], option, label["name"]))
    device = spec["device"]
    if device and not (isinstance(device, str) and os.path.isabs(device)):
        raise BtrfsError("%s: %r is not a block device path such as /dev/nvme0n1p2; leave it empty for the "
                         "filesystem of /." % (label["device"], device))


def unescape(field: str) -> str:
    """A field of fstab or /proc/self/mountinfo, with its octal escapes (\\040 for a space) undone."""
    return OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def escape(field: str) -> str:
    """A field for an fstab line: backslash, space and tab as octal escapes, as mount(8) reads them."""
    return "".join("\\%03o" % ord(c) if c in "\\ \t" else c for c in field)


def mounts(mountinfo: str) -> list[dict]:
    """The entries of /proc/self/mountinfo: root, mount point, filesystem type and source."""
    found = []
    for line in mountinfo.splitlines():
        left, _sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        found.append({"root": unescape(fields[3]), "mount_point": unescape(fields[4]), "fstype": tail[0],
                      "source": unescape(tail[1])})
    return found


def read_mounts() -> list[dict]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return mounts(f.read())


def mounted_at(device: str, name: str, entries: list[dict]) -> list[str]:
    """Mount points of subvolume `name` of the btrfs filesystem on `device`."""
    real = os.path.realpath(device)
    return [m["mount_point"] for m in entries
            if m["fstype"] == "btrfs" and m["root"] == "/" + name and os.path.realpath(m["source"]) == real]


def find_filesystem(run_command, device: str) -> dict:
    """Type, UUID and device of the filesystem on `device` (blkid), or of / when it is empty (findmnt)."""
    if device:
        rc, out, _err = run_command(["blkid", "-o", "export", device])
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line) if rc == 0 else {}
        return {"fstype": values.get("TYPE", ""), "uuid": values.get("UUID", ""), "source": device}
    rc, out, err = run_command(["findmnt", "--json", "--output", "FSTYPE,UUID,SOURCE", "--target", "/"])
    if rc != 0:
        raise BtrfsError("findmnt could not read the filesystem of /: %s" % err.strip())
    found = json.loads(out)["filesystems"][0]
    # A btrfs subvolume's source reads /dev/sda2[/@]: the device is before the bracket.
    return {"fstype": found.get("fstype") or "", "uuid": found.get("uuid") or "",
            "source": (found.get("source") or "").split("[", 1)[0]}


def ensure_subvolume(module, device: str, name: str, entries: list[dict]) -> bool:
    """Makes subvolume `name` at the top level of the filesystem on `device`; whether it was missing.
    A subvolume mounted somewhere exists; otherwise the top level is mounted on a private temporary
    directory (read-only in check mode) to look."""
    if mounted_at(device, name, entries):
        return False
    top = tempfile.mkdtemp(prefix="kvmlab-btrfs-")
    opts = "subvolid=5" + (",ro" if module.check_mode else "")
    rc, _out, err = module.run_command(["mount", "-t", "btrfs", "-o", opts, device, top])
    if rc != 0:
        os.rmdir(top)
        raise BtrfsError("cannot mount the top level of %s: %s" % (device, err.strip()))
    try:
        path = os.path.join(top, name)
        if os.path.lexists(path):
            if os.lstat(path).st_ino != BTRFS_FIRST_FREE_OBJECTID:
                kind = "directory" if os.path.isdir(path) else "file"
                raise BtrfsError("%s holds a %s named %s at its top level, not a subvolume; move it away or name "
                                 "another subvolume" % (device, kind, name))
            return False
        if not module.check_mode:
            # Looked up only here: check mode on a host without btrfs-progs yet still answers.
            btrfs = module.get_bin_path("btrfs", required=True)
            rc, _out, err = module.run_command([btrfs, "subvolume", "create", path])
            if rc != 0:
                raise BtrfsError("btrfs subvolume create %s failed: %s" % (name, err.strip()))
        return True
    finally:
        module.run_command(["umount", top])
        os.rmdir(top)


def fstab_line(uuid: str, spec: dict) -> str:
    options = ",".join(["subvol=" + spec["name"]] + spec["mount_options"])
    return " ".join(["UUID=" + uuid, escape(spec["mount_point"]), "btrfs", options, "0", "0"])


def plan_fstab(text: str, point: str, want: str) -> tuple[str | None, str]:
    """fstab's new text (None when it already says `want` for `point`) and the line it had for it.
    The first line for the mount point is replaced in place and any later ones for it dropped
    (mount(8) would take the last); every other line is kept byte for byte."""
    lines = text.splitlines(keepends=True)
    mine = [i for i, line in enumerate(lines)
            if not line.lstrip().startswith("#") and len(line.split()) >= 2 and unescape(line.split()[1]) == point]
    had = lines[mine[0]].rstrip("\n") if mine else ""
    if len(mine) == 1 and [*had.split(), "0", "0"][:6] == want.split():
        return None, had
    if not mine:
        new = lines + ([] if not lines or lines[-1].endswith("\n") else ["\n"]) + [want + "\n"]
    else:
        new = [want + "\n" if i == mine[0] else line for i, line in enumerate(lines) if i == mine[0] or i not in mine]
    return "".join(new), had


def cow_files(top: str) -> list[str]:
    """Regular files under `top`, on its filesystem, that still use copy-on-write."""
    found = []
    dev = os.stat(top).st_dev
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(root, d)).st_dev == dev]
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                if not get_flags(fd) & FS_NOCOW_FL:
                    found.append(path)
            except OSError:
                pass
            finally:
                os.close(fd)
    return sorted(found)


def ensure_nodatacow(path: str, check_mode: bool) -> bool:
    """Sets the C attribute on directory `path`; whether it was missing."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            flags = get_flags(fd)
        except OSError as exc:
            if exc.errno in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL):
                raise BtrfsError("%s is on a filesystem without file attributes (nodatacow needs btrfs); turn "
                                 "nodatacow off for a plain directory" % path) from None
            raise
        if flags & FS_NOCOW_FL:
            return False
        if not check_mode:
            set_flags(fd, flags | FS_NOCOW_FL)
            if not get_flags(fd) & FS_NOCOW_FL:
                raise BtrfsError("%s did not keep the C attribute: its filesystem ignores nodatacow (btrfs honours "
                                 "it); turn nodatacow off for a plain directory" % path)
        return True
    finally:
        os.close(fd)


def warn_cow(module, path: str, cow: list[str]) -> None:
    if cow:
        module.warn("%d file(s) under %s still use copy-on-write and stay so: %s%s. To convert one, stop its guest, "
                    "copy it (cp --reflink=never) to a new name in the directory and move it back."
                    % (len(cow), path, ", ".join(cow[:10]), " ..." if len(cow) > 10 else ""))


def checked_filesystem(module, spec: dict) -> tuple[dict, list[dict], dict | None]:
    """The filesystem of `spec` (refused unless btrfs), the host's mounts, and the mount at the
    mount point (refused unless it is this subvolume; None when nothing is mounted there)."""
    point, name = spec["mount_point"], spec["name"]
    fs = find_filesystem(module.run_command, spec["device"])
    if fs["fstype"] != "btrfs" or not fs["uuid"]:
        raise BtrfsError("%s is %s, not btrfs, so it cannot hold the %s subvolume. Name a btrfs device in "
                         "subvolume.device, or leave subvolume out to keep the VM storage in a plain directory at %s."
                         % (spec["device"] or "The filesystem of /", fs["fstype"] or "not a filesystem blkid "
                            "recognises", name, point), not_btrfs=True, fstype=fs["fstype"])
    entries = read_mounts()
    on_point = [m for m in entries if m["mount_point"] == point]
    here = on_point[-1] if on_point else None  # the last mount on a point hides the others
    if here is not None and (here["fstype"] != "btrfs" or here["root"] != "/" + name):
        found = (here["source"], point, here["fstype"], here["root"], name)
        raise BtrfsError("%s is mounted at %s (%s, %s), not the %s subvolume; unmount it, or mount the subvolume "
                         "elsewhere with subvolume.mount_point." % found)
    return fs, entries, here


def mount(module, point: str, new_fstab: str | None, mounted: bool) -> None:
    """Writes fstab's new text (when there is one), then mounts the point, or remounts it when its
    line changed."""
    if new_fstab is not None:
        write_file(module, FSTAB, new_fstab)
        if os.path.isdir("/run/systemd/system"):  # systemd's mount units follow fstab
            module.run_command(["systemctl", "daemon-reload"])
    if not mounted:
        os.makedirs(point, mode=0o755, exist_ok=True)
        argv = ["mount", point]
    elif new_fstab is not None:
        argv = ["mount", "-o", "remount", point]
    else:
        return
    rc, _out, err = module.run_command(argv)
    if rc != 0:
        raise BtrfsError("%s failed: %s" % (" ".join(argv), err.strip()))


def converge(module, spec: dict) -> dict:
    """The subvolume of `spec` made, in fstab, mounted and nodatacow, in that order (nodatacow while
    the subvolume is still empty, so the images made later inherit it). Returns `actions` (create,
    fstab, mount, remount, nodatacow), `uuid`, `cow_files` and the `diff` of each part."""
    check, point, name = module.check_mode, spec["mount_point"], spec["name"]
    fs, entries, here = checked_filesystem(module, spec)
    actions, before, after = [], {}, {}

    def did(action: str, key: str, was: dict, now: dict) -> None:
        actions.append(action)
        before[key], after[key] = was, now

    if ensure_subvolume(module, fs["source"], name, entries):
        did("create", "subvolume " + name, {"exists": False}, {"exists": True})
    want = fstab_line(fs["uuid"], spec)
    try:
        with open(FSTAB, encoding="utf-8", errors="surrogateescape") as f:
            new, had = plan_fstab(f.read(), point, want)
    except FileNotFoundError:
        new, had = plan_fstab("", point, want)
    if new is not None:
        did("fstab", "fstab " + point, {"line": had}, {"line": want})
    if here is None:
        did("mount", "mount " + point, {"mounted": False}, {"mounted": True})
    elif new is not None:
        actions.append("remount")
    if not check:
        mount(module, point, new, here is not None)
    cow = []
    if spec["nodatacow"]:
        # In check mode a subvolume not mounted yet leaves nothing to look at (the mount point shows
        # the filesystem underneath): the new mount would be made nodatacow.
        pending = check and here is None
        if pending or ensure_nodatacow(point, check):
            did("nodatacow", "nodatacow " + point, {"nodatacow": False}, {"nodatacow": True})
        if not pending:
            cow = cow_files(point)
            warn_cow(module, point, cow)
    return {"actions": actions, "uuid": fs["uuid"], "cow_files": cow, "diff": {"before": before, "after": after}}
