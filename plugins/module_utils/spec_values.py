# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of single spec values, shared by the controller's validation and the modules.

Control characters (CONTROL_RE, text_errors), absolute normalised paths (path_error), sizes
(parse_size) and MAC addresses (MAC_RE). The checks of whole storage and network specs are in
plugin_utils/storage_network_checks.py; the guests' in plugin_utils/guest.py.
"""

from __future__ import annotations

import posixpath
import re

SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
# A MAC address as libvirt writes it: six lower-case hex pairs. Use with fullmatch.
MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# Characters no spec string may hold: C0 and C1 controls, DEL, the Unicode line and paragraph
# separators, lone surrogates and the non-characters XML 1.0 cannot carry. A newline in a path
# would add a line to a systemd unit; most of these cannot appear in XML even escaped.
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


def text_errors(value, label: str) -> list[str]:
    """Every string in `value` (a spec: mappings, lists, scalars; keys too) that holds a control
    character, named by its path under `label`."""
    errors: list[str] = []
    if isinstance(value, str):
        bad = CONTROL_RE.search(value)
        if bad:
            errors.append("%s: %r holds the control character %r; control characters are refused in "
                          "every field (they could change the XML or systemd units written from it)."
                          % (label, value, bad.group()))
    elif isinstance(value, dict):
        for key, item in value.items():
            errors += text_errors(key, "%s (a key)" % label)
            errors += text_errors(item, "%s.%s" % (label, key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            errors += text_errors(item, "%s[%d]" % (label, i))
    return errors


def path_error(value, label: str, example: str = "") -> str | None:
    """Why `value` is not an absolute, normalised path, or None. Normalised: no '.', '..', '//'
    or trailing '/', so two spellings of one file cannot pass as two files."""
    if not isinstance(value, str) or not value.startswith("/"):
        hint = "; give one such as %s" % example if example else ""
        return "%s: %r is not an absolute path%s." % (label, value, hint)
    norm = posixpath.normpath(value)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if norm != value:
        return "%s: %r is not normalised; write it as %s." % (label, value, norm)
    return None


def parse_size(value) -> int:
    """Bytes in a size such as 40G, 512M, 1.5T, 40GiB or an integer of bytes (binary units).

    Raises ValueError for anything else.
    """
    if isinstance(value, bool):
        raise ValueError("not a size: %r" % (value,))
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative size: %r" % (value,))
        return value
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", str(value), re.IGNORECASE)
    if not m:
        raise ValueError("not a size: %r (use a number with K, M, G or T, e.g. 40G)" % (value,))
    return int(float(m.group(1)) * SIZE_UNITS[m.group(2).lower()])
