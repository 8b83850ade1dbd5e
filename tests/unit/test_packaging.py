"""What Galaxy and ansible-test read: one version for the collection and its content, a license,
and no placeholder addresses."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_every_version_added_is_at_most_the_collections_version():
    """Nothing is released yet (changelogs/changelog.yaml has no release): no plugin may claim a
    version after the collection's own."""
    found = {}
    for path in list((ROOT / "plugins").rglob("*.py")) + list((ROOT / "roles").rglob("argument_specs.yml")):
        for match in re.finditer(r"version_added:\s*\"?([0-9.]+)\"?", path.read_text()):
            found[str(path.relative_to(ROOT))] = match.group(1)
    assert found, "no version_added found"
    later = {p: v for p, v in found.items() if _version(v) > _version(GALAXY["version"])}
    assert later == {}, "version_added after galaxy.yml's %s" % GALAXY["version"]


def test_license_and_addresses():
    assert GALAXY["license"] == ["GPL-3.0-or-later"]
    assert "GNU GENERAL PUBLIC LICENSE" in (ROOT / "LICENSE").read_text()[:200]
    assert "Version 3" in (ROOT / "LICENSE").read_text()[:200]
    for key in ("repository", "documentation", "homepage", "issues"):
        assert "example" not in str(GALAXY.get(key, "")), key


def test_the_lowest_ansible_core_claimed_is_the_one_tested():
    """meta/runtime.yml's requires_ansible starts at the ansible-core minor version that
    `make sanity` and the tests run on (requirements.txt's pin): no claim of an untested one."""
    claim = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())["requires_ansible"]
    lowest = re.fullmatch(r">=\s*([0-9.]+)", claim).group(1)
    pinned = re.search(r"^ansible-core==([0-9.]+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert _version(lowest)[:2] == _version(pinned)[:2], (claim, pinned)


def test_the_tarball_holds_the_collection_and_no_ones_site(tmp_path):
    """What `ansible-galaxy collection build` puts in the tarball users install: the roles,
    plugins and playbooks, and none of the example project, the tests or the harness."""
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    subprocess.run([str(galaxy), "collection", "build", "--output-path", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=120)
    with tarfile.open(tmp_path / ("kvmlab-hypervisor-%s.tar.gz" % GALAXY["version"])) as tar:
        names = tar.getnames()
    top = {name.split("/")[0] for name in names}
    assert {"roles", "plugins", "playbooks", "meta", "LICENSE", "README.md"} <= top
    assert not top & {"examples", "tests", "molecule", "tools", "inventories", ".kvmlab", "collections", "reports"}
    assert sorted({n.split("/")[1] for n in names if n.startswith("roles/") and n.count("/") >= 1}) == [
        "guest", "host", "network", "storage"]
