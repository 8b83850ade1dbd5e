# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Directories on the hypervisor, for kvmlab.hypervisor.vm_storage: made when missing, their owner,
group and mode repaired where the spec gives them. Everything is checked before anything changes."""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat

# The suboptions of a module's `directories` (documented in the kvmlab.hypervisor.storage fragment).
DIRECTORY_OPTIONS = {
    "path": {"type": "path", "required": True},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "mode": {"type": "raw"},
}

OCTAL_MODE = re.compile(r"0?[0-7]{3,4}")


class DirectoryError(Exception):
    """A spec no directory can satisfy; the message names the directory and the fix."""


def _mode(label: str, mode) -> int | None:
    if mode is None:
        return None
    if isinstance(mode, int) and not isinstance(mode, bool):
        value = mode  # YAML's 0750 arrives as 488, as ansible.builtin.file takes it
    elif isinstance(mode, str) and OCTAL_MODE.fullmatch(mode):
        value = int(mode, 8)
    else:
        raise DirectoryError("%s.mode: %r is not an octal mode; quote it as four digits, such as '0750'."
                             % (label, mode))
    if value > 0o7777:
        raise DirectoryError("%s.mode: %r is above 07777; give an octal mode such as '0750'." % (label, mode))
    return value


def _id(label: str, field: str, name: str | None, lookup, check_mode: bool):
    if name is None:
        return None
    if name.isdigit():
        return int(name)
    try:
        return lookup(name)
    except KeyError:
        if check_mode:  # a fresh host: the package that makes the user (swtpm's tss) is only predicted
            return name
        raise DirectoryError("%s.%s: there is no %s %r on this host; create it first or name another."
                             % (label, field, "user" if field == "owner" else "group", name)) from None


def _state(path: str) -> dict:
    st = os.stat(path)
    return {"owner": st.st_uid, "group": st.st_gid, "mode": stat.S_IMODE(st.st_mode)}


def _show(state: dict) -> dict:
    """A state as a diff shows it: names where the host has them, the mode in octal."""
    def name(lookup, number):
        if isinstance(number, str):  # a user or group check mode expects a package to make
            return number
        try:
            return lookup(number)
        except KeyError:
            return str(number)
    return {"owner": name(lambda n: pwd.getpwuid(n).pw_name, state["owner"]),
            "group": name(lambda n: grp.getgrgid(n).gr_name, state["group"]),
            "mode": "%04o" % state["mode"]}


def plan(specs: list, check_mode: bool = False) -> list:
    """[(path, current state or None, wanted {owner, group, mode} of the given fields)] for the
    directories that need a change. Raises DirectoryError before any change. In check mode an
    unknown user or group is planned by its name (the run would install what makes it)."""
    plans, seen = [], {}
    for spec in specs:
        path = spec["path"]
        label = "directories[%s]" % path
        if not os.path.isabs(path):
            raise DirectoryError("%s: the path is relative; give an absolute path." % label)
        norm = os.path.normpath(path)
        want = {"owner": _id(label, "owner", spec.get("owner"), lambda n: pwd.getpwnam(n).pw_uid, check_mode),
                "group": _id(label, "group", spec.get("group"), lambda n: grp.getgrnam(n).gr_gid, check_mode),
                "mode": _mode(label, spec.get("mode"))}
        want = {key: value for key, value in want.items() if value is not None}
        if norm in seen:
            if seen[norm] != want and want:
                raise DirectoryError("%s: listed twice with different owner, group or mode; keep one entry." % label)
            continue
        seen[norm] = want
        if os.path.isdir(norm):
            current = _state(norm)
            if any(current[key] != value for key, value in want.items()):
                plans.append((norm, current, want))
        elif os.path.lexists(norm):
            raise DirectoryError("%s: the path exists but is not a directory; move it away." % label)
        else:
            plans.append((norm, None, want))
    return plans


def diff(plans: list) -> tuple:
    """The (before, after) diff sections of the planned changes, keyed by path."""
    before, after = {}, {}
    for path, current, want in plans:
        before[path] = _show(current) if current else {"exists": False}
        made = current or {"owner": 0, "group": 0, "mode": 0o755}
        after[path] = _show(dict(made, **want))
    return before, after


def apply(plans: list) -> None:
    """Makes and repairs the planned directories (parents that are missing too: root, 0755)."""
    for path, current, want in plans:
        try:
            if current is None:
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                os.mkdir(path, 0o700)  # no wider than wanted until its owner and mode are set
            if "owner" in want or "group" in want:  # before chmod: a chown may clear setgid
                os.chown(path, want.get("owner", -1), want.get("group", -1))
            if current is None or current["mode"] != want.get("mode", current["mode"]):
                os.chmod(path, want.get("mode", 0o755))
        except OSError as exc:
            raise DirectoryError("directories[%s]: %s" % (path, exc)) from None
