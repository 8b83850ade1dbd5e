# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files written whole on the managed host."""

from __future__ import annotations

import os
import tempfile


def write_file(module, path: str, text: str, mode: int | None = None) -> None:
    """Replaces `path` atomically: a temporary file beside it, flushed to disk, then renamed over
    it, so a run killed halfway leaves the old file or the new one, never a part. Missing parent
    directories are made (0755). The mode is `mode`, else the old file's, else 0644."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o755, exist_ok=True)
    if mode is None:
        mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
    fd, tmp = tempfile.mkstemp(prefix=".kvmlab-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        module.atomic_move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
