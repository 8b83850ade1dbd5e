# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files written whole on the managed host."""

from __future__ import annotations

import os
import tempfile


def fsync_dir(path: str) -> None:
    """A directory flushed to disk: the renames and new entries in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(module, path: str, text: str, mode: int | None = None) -> None:
    """Replaces `path` atomically: a temporary file beside it, flushed to disk, then renamed over
    it, so a run killed halfway leaves the old file or the new one, never a part. Missing parent
    directories are made (0755). The mode is `mode`, else the old file's, else 0644; the file has
    it from the start (a 0600 file is never readable by others, not even for a moment)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o755, exist_ok=True)
    exists = os.path.exists(path)
    keep = mode is None  # the old file's owner, mode and SELinux context
    if mode is None:
        mode = os.stat(path).st_mode & 0o7777 if exists else 0o644
    fd, tmp = tempfile.mkstemp(prefix=".kvmlab-", dir=folder)  # made 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if exists:
            module.atomic_move(tmp, path, keep_dest_attrs=keep)
        else:
            # AnsibleModule.atomic_move would give a new file the umask's mode after the rename.
            os.rename(tmp, path)
        fsync_dir(folder)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
