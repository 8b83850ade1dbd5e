# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A kernel setting kept on now and at boot, for kvmlab.hypervisor.libvirt_network's IP
forwarding: its live value under /proc/sys and its line in a sysctl.d file (the file's other
lines kept byte for byte)."""

from __future__ import annotations

import os

from ansible_collections.kvmlab.hypervisor.plugins.module_utils.files import write_file


def _key(text: str) -> str:
    return text.strip().replace("/", ".")


def file_value(text: str, key: str) -> str | None:
    """The value a sysctl.d file gives `key` (its last assignment, as systemd-sysctl reads it)."""
    value = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;" or "=" not in stripped:
            continue
        name, _sep, given = stripped.partition("=")
        if _key(name.lstrip("-")) == key:
            value = given.strip()
    return value


def plan_file(text: str, key: str, value: str) -> str | None:
    """The file's new text so that it gives `key` `value`, or None when it already does: the last
    line for the key is rewritten, or a line appended."""
    if file_value(text, key) == value:
        return None
    lines = text.splitlines(keepends=True)
    mine = [i for i, line in enumerate(lines)
            if "=" in line and line.strip()[:1] not in ("#", ";")
            and _key(line.partition("=")[0].strip().lstrip("-")) == key]
    want = "%s = %s\n" % (key, value)
    if mine:
        lines[mine[-1]] = want
    else:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(want)
    return "".join(lines)


def proc_path(key: str) -> str:
    return os.path.join("/proc/sys", *key.split("."))


def converge(module, key: str, value: str, path: str) -> dict:
    """`key` = `value` now (under /proc/sys) and in the sysctl.d file `path`. Returns `changed` and
    the `before` and `after` of the live value and the file's."""
    with open(proc_path(key), encoding="ascii") as f:
        live = f.read().strip()
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    new = plan_file(text, key, value)
    before = {"live": live, "file": file_value(text, key)}
    after = {"live": value, "file": value}
    if not module.check_mode:
        if new is not None:
            write_file(module, path, new)
        if live != value:
            with open(proc_path(key), "w", encoding="ascii") as f:
                f.write(value + "\n")
    return {"changed": before != after, "before": before, "after": after}
