"""The Arch Linux data of the host role and the modules, against Arch's packaging facts
(tests/unit/fixtures/arch_packaging.yml, each fact with its source): no Arch host runs here, so
this is what keeps a package name, user or path from drifting back to a guess."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import domain_preflight, firmware, libvirt_common

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
    assert GUEST["kvmlab_guest_swtpm_socket_group"] in FACTS["users"]["qemu_user_groups"]


def test_the_modules_name_arch_packages_and_paths_as_arch_has_them():
    for part, names in domain_preflight.PACKAGES.items():
        assert set(names["arch"]) <= set(FACTS["packages"]), part
        assert set(names["arch"]) <= set(ARCH["__host_packages"]), part  # the host role installs them
    assert FACTS["paths"]["virtiofsd"] in domain_preflight.VIRTIOFSD_PATHS
    assert FACTS["paths"]["firmware_descriptors"] in firmware.FIRMWARE_DIRS
    # What tells check mode that libvirt is not installed yet knows where Arch puts its daemons.
    assert {FACTS["paths"]["libvirtd"], FACTS["paths"]["virtqemud"]} <= set(libvirt_common.DAEMONS)
    source = "".join(p.read_text() for p in (ROOT / "plugins").glob("*/*.py"))
    for wrong in FACTS["not_packages"]:
        assert "Arch: %s" % wrong not in source and "Arch %s" % wrong not in source, wrong


def arch_firmware(tmp_path):
    """Arch's descriptors as files (paths moved under tmp_path), with the firmware files that
    edk2-ovmf installs (not those of the descriptors it ships without them). Returns
    (descriptor directories, moved paths, /etc/qemu/firmware's stand-in)."""
    share, etc = tmp_path / "usr-share-qemu-firmware", tmp_path / "etc-qemu-firmware"
    share.mkdir()
    moved = {}
    for name, d in FACTS["firmware"].items():
        for key in ("executable", "nvram_template"):
            path = tmp_path / d[key].lstrip("/")
            if d.get("installed", True):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"\0" * 64)
            moved[d[key]] = str(path)
        (share / name).write_text(json.dumps({
            "interface-types": ["uefi"], "features": d["features"],
            "mapping": {"device": "flash", "executable": {"filename": moved[d["executable"]], "format": "raw"},
                        "nvram-template": {"filename": moved[d["nvram_template"]], "format": "raw"}},
            "targets": [{"architecture": "x86_64", "machines": ["pc-q35-*"]}]}))
    return (str(etc), str(share)), moved, etc


def test_arch_ships_no_enrolled_keys_firmware(tmp_path):
    """Why the host role must build an enrolled-keys variables store on Arch: its descriptors
    offer Secure Boot, never with enrolled keys; and the IA32 one, whose files edk2-ovmf does not
    install, offers nothing."""
    dirs, _moved, _etc = arch_firmware(tmp_path)
    descriptors = firmware.descriptors(dirs)
    assert len(descriptors) == len(FACTS["firmware"])
    found = [Path(f).name for f in firmware.matching(descriptors, "x86_64", "pc-q35-9.2", secure=True,
                                                     enrolled=False)]
    assert found == ["50-edk2-ovmf-x86_64-secure-4m.json"]
    assert firmware.matching(descriptors, "x86_64", "pc-q35-9.2", secure=True, enrolled=True) == []


def test_on_arch_the_role_builds_enrolled_keys_from_edk2_ovmfs_secure_template(tmp_path):
    """Arch's descriptors give the module a build plan: enrol into a copy of OVMF_VARS.4m.fd, keep
    OVMF_CODE.secboot.4m.fd; and the tool it runs comes from an Arch package the role installs."""
    (etc_dir, share), moved, etc = arch_firmware(tmp_path)
    plan = firmware.plan(firmware.descriptors((etc_dir, share)), "x86_64", "/var/lib/kvmlab/firmware", etc_dir)
    assert plan["state"] == "build"
    assert plan["source_template"] == moved["/usr/share/edk2/x64/OVMF_VARS.4m.fd"]
    assert plan["template"] == "/var/lib/kvmlab/firmware/OVMF_VARS.4m.ms.fd"
    assert plan["descriptor"] == str(etc / "45-kvmlab-edk2-ovmf-x86_64-secure-4m-enrolled.json")
    desc = json.loads(plan["content"])
    assert desc["mapping"]["executable"]["filename"] == moved["/usr/share/edk2/x64/OVMF_CODE.secboot.4m.fd"]
    assert {"secure-boot", "enrolled-keys"} <= set(desc["features"])
    assert "virt-firmware" in ARCH["__host_packages"] and "virt-firmware" in FACTS["packages"]
    assert "Arch: virt-firmware" in (ROOT / "plugins" / "modules" / "firmware_enrolled_keys.py").read_text()


def test_arch_prefers_nftables_and_enables_no_unit_so_the_role_enables_libvirtds():
    """libvirt's firewall backend on Arch is nftables (upstream's default, not overridden): the
    tailnet hook's nftables path is the one Arch takes. Arch's packages enable nothing, and ship
    the modular daemons' units, which the host role stops and disables (vars/main.yml)."""
    assert FACTS["firewall_backend_priority"][0] == "nftables"
    hook = (ROOT / "roles" / "network" / "files" / "kvmlab-tailnet-hook.py").read_text()
    assert '"nft", "-a", "list", "chain", "ip", "libvirt_network", "guest_input"' in hook
    assert FACTS["units_enabled_by_package"] == [] and FACTS["modular_daemons_shipped"]
    modular = HOST["__host_modular_units"]  # a template: the daemons, times their units' suffixes
    for daemon in ("virtqemud", "virtnetworkd", "virtstoraged", "virtnodedevd", "virtsecretd", "virtnwfilterd",
                   "virtinterfaced", "virtproxyd"):
        assert "'%s'" % daemon in modular, daemon
    assert "['.socket', '-ro.socket', '-admin.socket', '.service']" in modular
