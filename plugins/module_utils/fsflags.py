# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inode flags (chattr/lsattr) by ioctl: the btrfs nodatacow flag (chattr +C)."""

from __future__ import annotations

import array
import fcntl
import os

# linux/fs.h
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_NOCOW_FL = 0x00800000


def get_flags(fd: int) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
    return buf[0]


def set_flags(fd: int, flags: int) -> None:
    fcntl.ioctl(fd, FS_IOC_SETFLAGS, array.array("i", [flags]), False)


def is_nocow(path: str) -> bool | None:
    """Whether `path` has the nodatacow flag; None when it cannot be read (missing, no support)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return bool(get_flags(fd) & FS_NOCOW_FL)
    except OSError:
        return None
    finally:
        os.close(fd)
