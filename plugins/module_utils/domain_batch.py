# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt_domain's options, defined once, and its batches: the per-guest options (from which
the module's argument spec, the suboptions of `guests` and the guest_site filter's entries are
derived), which of them a `guests` entry inherits from the module, and one guest's run."""

from __future__ import annotations

# Each guest's own options: never inherited by a guests[] entry (the guest's own data, and the
# destructive reset_nvram and purge).
OWN = {
    "name": {"type": "str"},
    "xml": {"type": "str"},
    "reset_nvram": {"type": "bool", "default": False},
    "purge": {"type": "bool", "default": False},
    "owned_paths": {"type": "list", "elements": "str", "default": []},
    "graphics_password": {"type": "str", "no_log": True},
}
# What a guests[] entry that does not set it takes from the module's own options.
INHERITABLE = {
    "state": {"type": "str", "choices": ["running", "shutdown", "absent"], "default": "running"},
    "autostart": {"type": "bool", "default": False},
    "shutdown_timeout": {"type": "int", "default": 120},
    "force_stop": {"type": "bool", "default": False},
    "allow_restart": {"type": "bool", "default": False},
}
PER_GUEST = (*OWN, *INHERITABLE)
INHERITED = tuple(INHERITABLE)


def argument_spec(extra: dict) -> dict:
    """The module's argument spec: one guest's options, `guests` with the same as suboptions
    (without defaults, so that an unset one is inherited or takes its default in `entries`), and
    `extra` (the connection)."""
    suboptions = {key: {k: v for k, v in spec.items() if k != "default"}
                  for key, spec in {**OWN, **INHERITABLE}.items()}
    suboptions["name"]["required"] = True
    return {**OWN, **INHERITABLE, "guests": {"type": "list", "elements": "dict", "options": suboptions}, **extra}


def entries(params: dict) -> list[dict]:
    """Each guest's complete options: the module's own (one guest), or each guests[] entry with
    the inherited options filled in from the module's and the others from their defaults."""
    if params["guests"] is None:
        return [{key: params[key] for key in PER_GUEST}]
    out = []
    for entry in params["guests"]:
        own = {key: entry.get(key) for key in PER_GUEST}
        for key in INHERITED:
            if own[key] is None:
                own[key] = params[key]
        for key, spec in OWN.items():
            if own[key] is None and "default" in spec:
                own[key] = spec["default"]
        out.append(own)
    return out


def twice(guests: list[dict]) -> list[str]:
    """The names listed more than once."""
    names = [g["name"] for g in guests]
    return sorted({n for n in names if names.count(n) > 1})


class GuestRun:
    """One guest's run: its own options (`params`), and the module's check mode and warnings."""

    def __init__(self, params: dict, check_mode: bool, warn) -> None:
        self.params, self.check_mode, self.warn = params, check_mode, warn


def summary(results: dict) -> dict:
    """A batch's result from its guests' results: changed, every --diff section (each naming
    its guest), the names of guests running with an older definition, and the failures."""
    diff, failed = [], []
    for result in results.values():
        shown = result.pop("diff", None) or []
        diff.extend(shown if isinstance(shown, list) else [shown])
        if result.get("failed"):
            failed.append(result["msg"])
    return {"changed": any(r.get("changed") for r in results.values()), "diff": diff, "failed": failed,
            "restart_required": sorted(n for n, r in results.items() if r.get("restart_required"))}
