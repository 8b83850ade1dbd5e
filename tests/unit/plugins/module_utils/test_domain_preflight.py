"""domain_preflight's own data and OS parsing: the packages it names are the ones the host role
installs, and the family comes from os-release as host_info reads it."""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import domain_preflight

ROOT = Path(__file__).resolve().parents[4]
VARS = ROOT / "roles" / "host" / "vars"


def installed(*files: str) -> set:
    names: set = set()
    for name in files:
        data = yaml.safe_load((VARS / name).read_text())
        for key in ("__host_packages", "__host_release_packages"):
            names.update(data.get(key) or [])
    return names


def test_the_packages_it_names_are_the_host_roles():
    debian, arch = installed("debian.yml", "debian-13.yml"), installed("arch.yml")
    for part, names in domain_preflight.PACKAGES.items():
        assert set(names) == {"debian", "arch"}, part
        assert set(names["debian"]) <= debian, part
        assert set(names["arch"]) <= arch, part


def test_the_family_comes_from_id_and_id_like(tmp_path, monkeypatch):
    release = tmp_path / "os-release"
    monkeypatch.setattr(domain_preflight, "OS_RELEASE", (str(tmp_path / "missing"), str(release)))
    for text, family, uefi in (
        ('ID=debian\nVERSION_ID="12"\n', "debian", "ovmf"),
        ('ID="ubuntu"\nID_LIKE=debian\n', "debian", "ovmf"),
        ("ID=arch\n", "arch", "edk2-ovmf"),
        ("ID=endeavouros\nID_LIKE='arch'\n", "arch", "edk2-ovmf"),
        ("ID=fedora\n", "", "arch: edk2-ovmf / debian: ovmf"),
    ):
        release.write_text(text)
        assert (domain_preflight.os_family(), domain_preflight.package("uefi")) == (family, uefi), text
    release.write_text("ID=debian\n")
    assert domain_preflight.package("swtpm") == "swtpm and swtpm-tools"
    release.unlink()
    assert domain_preflight.os_family() == ""
