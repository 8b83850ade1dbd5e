# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest backups on disk: their layout, manifest, chain checks and lock (libvirt_backup, libvirt_restore).

A guest's backups live in DEST/<guest name>/, one directory per backup, named by its UTC time
(20261207T201500Z). Each holds the guest's disks as qcow2 files named by target device (vda.qcow2),
its NVRAM file (nvram.fd), its TPM state directory (tpm/), its inactive domain XML (domain.xml)
and manifest.json, which is written last: a directory without one, or one still named
<name>.partial, is no backup and is never offered to restore. An incremental backup's disk files
are qcow2 overlays whose backing file is the same disk of the backup before it (a relative path,
../<parent>/vda.qcow2), so the chain reads as the whole disk at that backup's point in time.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import time

FORMAT = 1
MANIFEST = "manifest.json"
PARTIAL = ".partial"
LOCK = ".lock"
NAME_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z(?:-[0-9]{1,3})?$")
DEV_RE = re.compile(r"^[a-z][a-z0-9]{1,15}$")
MANIFEST_MAX = 4 * 1024 * 1024
CHUNK = 4 * 1024 * 1024


class BackupError(Exception):
    """A refusal or failure, its message naming the guest, the backup and the fix."""


def guest_dir(dest: str, guest: str) -> str:
    """DEST/<guest>: a libvirt domain name is a file name verbatim (libvirt refuses '/' in names)."""
    if not guest or "/" in guest or guest in (".", "..") or any(ord(c) < 32 or ord(c) == 127 for c in guest):
        raise BackupError("guest %r: not a name a backup directory can carry; use the guest's libvirt name." % guest)
    return os.path.join(dest, guest)


def new_name(gdir: str, now: float | None = None) -> str:
    """A new backup's name: its UTC time, made unique among the directory's entries."""
    base = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    taken = set(os.listdir(gdir)) if os.path.isdir(gdir) else set()
    name, n = base, 0
    while name in taken or name + PARTIAL in taken:
        n += 1
        name = "%s-%d" % (base, n)
    return name


def sha256_file(path: str, deadline: float | None = None) -> str:
    """The file's SHA-256; BackupError once time.monotonic() passes `deadline` (the run's timeout)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
            if deadline is not None and time.monotonic() > deadline:
                raise BackupError(
                    "%s: its checksum was not done within the timeout; raise the timeout (slow storage or a "
                    "huge file)." % path
                )
    return digest.hexdigest()


def file_record(path: str, rel: str, source: str | None = None, deadline: float | None = None) -> dict:
    """What the manifest says of one file: enough to check it and to put it back as it was."""
    st = os.lstat(path)
    return {
        "file": rel,
        "size": st.st_size,
        "sha256": sha256_file(path, deadline),
        "source": source,
        "mode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


def read_manifest(gdir: str, name: str) -> dict:
    """A backup's manifest, checked for shape; BackupError if it is missing or malformed."""
    guest = os.path.basename(gdir)
    path = os.path.join(gdir, name, MANIFEST)
    try:
        with open(path, "rb") as f:
            raw = f.read(MANIFEST_MAX + 1)
    except OSError as exc:
        raise BackupError(
            "guest %s, backup %s: no readable %s (%s); it is incomplete - take a new backup."
            % (guest, name, MANIFEST, exc.strerror)
        ) from None
    try:
        if len(raw) > MANIFEST_MAX:
            raise ValueError("larger than %d bytes" % MANIFEST_MAX)
        manifest = json.loads(raw)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError("format is not %d" % FORMAT)
        if manifest.get("name") != name or manifest.get("guest") != guest:
            raise ValueError("it names guest %r, backup %r" % (manifest.get("guest"), manifest.get("name")))
        if manifest.get("kind") not in ("full", "incremental"):
            raise ValueError("kind %r" % manifest.get("kind"))
        if (manifest["kind"] == "full") != (manifest.get("parent") is None):
            raise ValueError("a full backup has no parent, an incremental one has one")
        for disk in manifest.get("disks", []):
            if not DEV_RE.match(str(disk.get("dev"))) or disk.get("file") != disk["dev"] + ".qcow2":
                raise ValueError("disk entry %r" % disk.get("dev"))
    except (ValueError, TypeError, KeyError) as exc:
        raise BackupError(
            "guest %s, backup %s: %s is malformed (%s); restore refuses it - take a new backup."
            % (guest, name, MANIFEST, exc)
        ) from None
    return manifest


def listing(gdir: str) -> tuple[list[str], list[str]]:
    """(complete backups, oldest first; incomplete directories): a complete one has its manifest."""
    if not os.path.isdir(gdir):
        return [], []
    complete, incomplete = [], []
    for entry in sorted(os.listdir(gdir)):
        path = os.path.join(gdir, entry)
        if not os.path.isdir(path) or os.path.islink(path):
            continue
        if entry.endswith(PARTIAL) and NAME_RE.match(entry[: -len(PARTIAL)]):
            incomplete.append(entry)
        elif NAME_RE.match(entry):
            (complete if os.path.isfile(os.path.join(path, MANIFEST)) else incomplete).append(entry)
    return complete, incomplete


def chain(gdir: str, name: str, complete: list[str] | None = None) -> list[dict]:
    """The manifests from the full backup to `name`, oldest first; BackupError names a missing link."""
    guest = os.path.basename(gdir)
    if complete is None:
        complete = listing(gdir)[0]
    out, seen = [], set()
    current = name
    while current is not None:
        if current in seen or len(seen) > 10000:
            raise BackupError(
                "guest %s, backup %s: its chain loops at %s; restore refuses it." % (guest, name, current)
            )
        seen.add(current)
        if current not in complete:
            raise BackupError(
                "guest %s, backup %s: the chain's link %s is missing or incomplete; restore refuses "
                "it - restore an older complete chain, or take a new full backup." % (guest, name, current)
            )
        manifest = read_manifest(gdir, current)
        out.append(manifest)
        current = manifest.get("parent")
    out.reverse()
    if out[0]["kind"] != "full":
        raise BackupError(
            "guest %s, backup %s: its chain starts at %s, which is not a full backup." % (guest, name, out[0]["name"])
        )
    first = out[0]
    for manifest in out[1:]:
        if manifest.get("chain") != first["name"] or manifest.get("uuid") != first.get("uuid"):
            raise BackupError(
                "guest %s, backup %s: %s does not belong to the chain of %s; restore refuses it."
                % (guest, name, manifest["name"], first["name"])
            )
        if [d["dev"] for d in manifest["disks"]] != [d["dev"] for d in first["disks"]]:
            raise BackupError(
                "guest %s, backup %s: %s has other disks than %s; restore refuses it."
                % (guest, name, manifest["name"], first["name"])
            )
    return out


def records(manifest: dict) -> list[dict]:
    """Every file record of a manifest (disks, NVRAM, TPM state, domain XML)."""
    out = [dict(d) for d in manifest.get("disks", [])]
    if manifest.get("nvram"):
        out.append(manifest["nvram"])
    if manifest.get("tpm"):
        out.extend(manifest["tpm"].get("files", []))
    out.append(manifest["domain_xml"])
    return out


def verify(gdir: str, manifest: dict, deadline: float | None = None) -> None:
    """Each file of a backup is there, with its size and SHA-256; BackupError names the first that is not."""
    guest, name = os.path.basename(gdir), manifest["name"]
    root = os.path.realpath(os.path.join(gdir, name))
    for rec in records(manifest):
        rel = str(rec.get("file", ""))
        path = os.path.realpath(os.path.join(root, rel))
        if not rel or os.path.isabs(rel) or not path.startswith(root + os.sep):
            raise BackupError(
                "guest %s, backup %s: the manifest names %r, outside the backup; restore refuses it."
                % (guest, name, rel)
            )
        try:
            st = os.lstat(os.path.join(root, rel))  # the file itself: a symbolic link is no backup file
        except OSError:
            raise BackupError(
                "guest %s, backup %s: %s is missing; restore refuses it - restore another backup." % (guest, name, rel)
            ) from None
        if not stat.S_ISREG(st.st_mode) or st.st_size != rec.get("size"):
            raise BackupError(
                "guest %s, backup %s: %s has %d bytes, the manifest says %s; restore refuses it - "
                "restore another backup." % (guest, name, rel, st.st_size, rec.get("size"))
            )
        if sha256_file(path, deadline) != rec.get("sha256"):
            raise BackupError(
                "guest %s, backup %s: the checksum of %s does not match its manifest; restore refuses "
                "it - restore another backup." % (guest, name, rel)
            )


class Lock:
    """DEST/<guest>/.lock, held (flock) by one backup or restore of that guest at a time; another
    waits up to `seconds`, then is refused. The kernel drops it with the process, even on SIGKILL."""

    def __init__(self, gdir: str, seconds: float):
        self.gdir, self.seconds, self.fd = gdir, seconds, None

    def __enter__(self):
        os.makedirs(self.gdir, mode=0o711, exist_ok=True)
        os.chmod(self.gdir, 0o711)  # QEMU (its own user) opens the disk targets inside
        self.fd = os.open(os.path.join(self.gdir, LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.seconds
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    os.close(self.fd)
                    raise BackupError(
                        "guest %s: another backup or restore holds %s for more than %g s; let it "
                        "finish, or raise the lock timeout."
                        % (os.path.basename(self.gdir), os.path.join(self.gdir, LOCK), self.seconds)
                    ) from None
                time.sleep(0.2)

    def __exit__(self, *exc):
        os.close(self.fd)


def free_bytes(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def need_space(guest: str, what: str, path: str, need: int) -> None:
    """Refuse, before anything is written, when `path`'s filesystem has less than need and 5 % plus 64 MiB free."""
    want = int(need * 1.05) + 64 * 1024 * 1024
    free = free_bytes(path)
    if free < want:
        raise BackupError(
            "guest %s: %s needs about %d MiB at %s, which has %d MiB free; free space there or choose "
            "another destination. Nothing was written." % (guest, what, want >> 20, path, free >> 20)
        )


def copy_file(src: str, dst: str) -> None:
    """src to dst (sparse holes kept by shutil's copy), flushed, with src's mode and owner."""
    shutil.copyfile(src, dst)
    st = os.stat(src)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.chown(dst, st.st_uid, st.st_gid)
    with open(dst, "rb+") as f:
        os.fsync(f.fileno())


def copy_tree(src: str, dst: str) -> list[tuple[str, str]]:
    """A directory tree (regular files and directories only; links and others are refused), with
    modes and owners. Returns [(source path, path relative to dst)] of the files."""
    files = []
    os.makedirs(dst)
    st = os.stat(src)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.chown(dst, st.st_uid, st.st_gid)
    for entry in sorted(os.listdir(src)):
        s, d = os.path.join(src, entry), os.path.join(dst, entry)
        mode = os.lstat(s).st_mode
        if stat.S_ISDIR(mode):
            files += [(p, os.path.join(entry, r)) for p, r in copy_tree(s, d)]
        elif stat.S_ISREG(mode):
            copy_file(s, d)
            files.append((s, entry))
        elif stat.S_ISSOCK(mode):
            continue  # swtpm's control socket, when it lives in the state directory
        else:
            raise BackupError("%s is neither a file nor a directory; a TPM state directory holds only those." % s)
    return files


def tree_bytes(path: str) -> int:
    total = 0
    for folder, _dirs, names in os.walk(path):
        for entry in names:
            p = os.path.join(folder, entry)
            if os.path.isfile(p) and not os.path.islink(p):
                total += os.lstat(p).st_size
    return total


def remove_tree(path: str) -> None:
    shutil.rmtree(path)
