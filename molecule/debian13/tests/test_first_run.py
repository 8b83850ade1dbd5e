"""The first run as the README tells a new owner to do it: `--check --diff` on the never converged
host (prepare.yml) succeeds, and every task it reports as changed is changed by the real converge
that follows, and the other way round, except for the differences the README names (between its
first-run-differences markers)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def runs() -> list[dict]:
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def named_differences() -> dict[str, set]:
    """{"check run only": {task, ...}, "real run only": {...}} from the README."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- first-run-differences -->")[1].split("<!-- /first-run-differences -->")[0]
    found: dict[str, set] = {"check run only": set(), "real run only": set()}
    for task, side in re.findall(r"^- `([^`]+)` \((check run only|real run only)\)", block, re.M):
        found[side].add(task)
    return found


def first_check_and_real() -> tuple[dict, dict]:
    records = [r for r in runs() if r["playbook"] == "converge.yml"]
    check = next(i for i, r in enumerate(records) if r["check_mode"])
    real = next(r for r in records[check + 1:] if not r["check_mode"])
    return records[check], real


def test_the_check_run_on_the_fresh_host_succeeded_and_predicted_the_install():
    check = first_check_and_real()[0]
    assert check["failed"] == []
    assert "kvmlab.hypervisor.host : Install the hypervisor packages (Debian)" in check["changed"]
    # It went on to the end: the guests would be defined.
    assert "kvmlab.hypervisor.guest : Converge the guests" in check["changed"]


def test_what_the_check_run_predicts_is_what_the_real_run_changes():
    check, real = first_check_and_real()
    allowed = named_differences()
    assert allowed["check run only"], "the README's first-run-differences list is missing"
    assert sorted(set(check["changed"]) - set(real["changed"]) - allowed["check run only"]) == []
    assert sorted(set(real["changed"]) - set(check["changed"]) - allowed["real run only"]) == []
    # A fresh host: every role's one converging call changed something. The storage role's btrfs
    # tasks and the network role's sysctl task are folded into these calls (12 changed tasks
    # where there were 15).
    assert {"kvmlab.hypervisor.host : Install the hypervisor packages (Debian)",
            "kvmlab.hypervisor.storage : Converge the VM storage subvolume, directories, libvirt pools and volumes",
            "kvmlab.hypervisor.network : Converge the libvirt networks, their DHCP reservations and IP forwarding",
            "kvmlab.hypervisor.guest : Converge the guests"} <= set(real["changed"]), real["changed"]
    assert len(real["changed"]) >= 12
