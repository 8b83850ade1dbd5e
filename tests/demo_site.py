"""The demo inventory's guests as the site resolves them, for tests that compute what it builds."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GROUP_VARS = ROOT / "inventories/demo/group_vars/hypervisors.yml"


def demo_overrides() -> dict:
    """guest_overrides of the demo inventory with demo_guest_os_enabled false (the scenarios
    default and debian13): the disks' `source: "{{ demo_guest_os }}"` is none."""
    return yaml.safe_load(GROUP_VARS.read_text().replace('"{{ demo_guest_os }}"', "null"))["guest_overrides"]
