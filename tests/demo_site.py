"""The demo inventory's guests as the site resolves them, for tests that compute what it builds."""

from __future__ import annotations

from pathlib import Path

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[1]
GROUP_VARS = ROOT / "examples/workstation/inventories/demo/group_vars/hypervisors.yml"


def resolved(value, context: dict):
    """`value` with each string that is a whole Jinja2 expression evaluated in `context`, as
    Ansible templates the inventory's variables (a value, not its string)."""
    if isinstance(value, dict):
        return {k: resolved(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [resolved(v, context) for v in value]
    if isinstance(value, str) and value.startswith("{{") and value.endswith("}}"):
        return jinja2.Environment().compile_expression(value[2:-2].strip())(**context)
    return value


def demo_overrides(guest_os: bool = False) -> dict:
    """kvmlab_guest_overrides of the demo inventory as the scenarios resolve them: demo_guest_os_enabled
    false (default and debian13: the disks' source is none) or true (guests: its path, with the
    checksum left as the placeholder `sha256:...`, which no test here reads)."""
    demo_guest_os = {"path": "/var/cache/kvmlab-guest-os/kvmlab-guest.qcow2", "checksum": "sha256:..."}
    context = {"demo_guest_os_enabled": guest_os, "demo_guest_os": demo_guest_os if guest_os else None}
    return resolved(yaml.safe_load(GROUP_VARS.read_text())["kvmlab_guest_overrides"], context)
