"""The Arch Linux data of the host role and the modules, against Arch's packaging facts
(tests/unit/fixtures/arch_packaging.yml, each fact with its source): no Arch host runs here, so
this is what keeps a package name, user or path from drifting back to a guess."""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import libvirt_common
from ansible_collections.kvmlab.hypervisor.plugins.modules import libvirt_domain

ROOT = Path(__file__).resolve().parents[2]
FACTS = yaml.safe_load((ROOT / "tests" / "unit" / "fixtures" / "arch_packaging.yml").read_text())
ARCH = yaml.safe_load((ROOT / "roles" / "host" / "vars" / "arch.yml").read_text())
HOST = yaml.safe_load((ROOT / "roles" / "host" / "vars" / "main.yml").read_text())
GUEST = yaml.safe_load((ROOT / "roles" / "guest" / "defaults" / "main.yml").read_text())


def test_every_arch_package_exists_under_that_name_and_none_conflicts():
    wanted = ARCH["__host_packages"] + ARCH["__host_gui_packages"]
    assert sorted(set(wanted) - set(FACTS["packages"])) == []
    assert sorted(set(wanted) & set(FACTS["not_packages"])) == []
    assert {p: FACTS["conflicts"][p] for p in wanted if p in FACTS["conflicts"]} == {}


def test_the_seed_hosts_packages_are_all_installed():
    # The seed's own list (qemu-full, libvirt, virt-manager, virt-viewer, virt-install, edk2-ovmf,
    # swtpm, libtpms), plus libvirt's Python binding, which every module imports.
    seed = {"qemu-full", "libvirt", "virt-manager", "virt-viewer", "virt-install", "edk2-ovmf", "swtpm", "libtpms"}
    assert seed | {"libvirt-python"} <= set(ARCH["__host_packages"] + ARCH["__host_gui_packages"])


def test_users_paths_and_units_match_arch():
    assert ARCH["__host_qemu_conf_defaults"] == {"swtpm_user": FACTS["users"]["swtpm_user"],
                                                 "swtpm_group": FACTS["users"]["swtpm_user"]}
    assert HOST["__host_qemu_conf_path"] == FACTS["paths"]["qemu_conf"]
    assert {u["name"] for u in HOST["__host_units"]} <= set(FACTS["units"])
    # QEMU (libvirt-qemu) must be able to open the external swtpm's socket: its group is one of
    # the QEMU user's groups.
    assert GUEST["guest_swtpm_socket_group"] in FACTS["users"]["qemu_user_groups"]


def test_the_modules_name_arch_packages_and_paths_as_arch_has_them():
    for part, names in libvirt_domain.PACKAGES.items():
        assert all(n in FACTS["packages"] for n in names["arch"].split(" and ")), part
    assert FACTS["paths"]["virtiofsd"] in libvirt_domain.VIRTIOFSD_PATHS
    assert FACTS["paths"]["firmware_descriptors"] in libvirt_domain.FIRMWARE_DIRS
    source = Path(libvirt_common.__file__).read_text() + "".join(
        p.read_text() for p in (ROOT / "plugins" / "modules").glob("*.py"))
    for wrong in FACTS["not_packages"]:
        assert "Arch: %s" % wrong not in source and "Arch %s" % wrong not in source, wrong


def test_arch_ships_no_enrolled_keys_firmware():
    """Why the host role must build an enrolled-keys variables store on Arch: its descriptors
    offer Secure Boot, never with enrolled keys."""
    descriptors = [{"interface-types": ["uefi"], "features": d["features"], "_file": name,
                    "targets": [{"architecture": "x86_64", "machines": ["pc-q35-*"]}]}
                   for name, d in FACTS["firmware"].items()]
    found = libvirt_domain.matching_firmware
    assert found(descriptors, "x86_64", "pc-q35-9.2", secure=True, enrolled=False) == [
        "50-edk2-ovmf-x86_64-secure-4m.json"]
    assert found(descriptors, "x86_64", "pc-q35-9.2", secure=True, enrolled=True) == []
