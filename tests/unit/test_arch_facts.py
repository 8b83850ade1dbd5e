"""The Arch Linux data of the host role and the modules, against Arch's own packaging files.

No Arch host runs here, so the evidence is Arch's PKGBUILDs, .SRCINFO files and firmware
descriptors, copied byte for byte into tests/unit/fixtures/arch/ by tools/vendor_arch_sources.py
(SOURCES.yml: repository, commit and sha256 of each). Every fact below is read out of those files
here, not written down by us, so a package name, user or path of ours that drifts from Arch's
fails. The few facts that live in upstream projects' sources rather than in Arch's packaging
(systemd's /dev/kvm mode, libvirt's unit names and firewall order) are quoted, with their source,
in tests/unit/fixtures/arch_packaging.yml.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import domain_preflight, firmware, libvirt_common

ROOT = Path(__file__).resolve().parents[2]
VENDORED = ROOT / "tests" / "unit" / "fixtures" / "arch"
SOURCES = yaml.safe_load((VENDORED / "SOURCES.yml").read_text())
ARCHPOWER, LOONG = VENDORED / "kth5+archpower", VENDORED / "loongarchlinux+extra"
QUOTED = yaml.safe_load((ROOT / "tests" / "unit" / "fixtures" / "arch_packaging.yml").read_text())
ARCH = yaml.safe_load((ROOT / "roles" / "host" / "vars" / "arch.yml").read_text())
HOST = yaml.safe_load((ROOT / "roles" / "host" / "vars" / "main.yml").read_text())
GUEST = yaml.safe_load((ROOT / "roles" / "guest" / "defaults" / "main.yml").read_text())
WANTED = ARCH["__host_packages"] + ARCH["__host_gui_packages"]


def srcinfo(path: Path) -> dict[str, dict[str, list[str]]]:
    """A .SRCINFO as {pkgname: {key: [values]}}: each split package's own keys, else pkgbase's."""
    base: dict[str, list[str]] = {}
    packages: dict[str, dict[str, list[str]]] = {}
    current = base
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition(" = ")
        if not sep:
            continue
        if key == "pkgname":
            current = packages[value] = {}
        else:
            current.setdefault(key, []).append(value)
    return {name: {**base, **own} for name, own in packages.items()}


def pkgbuild_names(path: Path) -> list[str]:
    """pkgname of a PKGBUILD without a .SRCINFO: `pkgname=x` or `pkgname=(x 'y' ...)` on one line."""
    found = re.search(r"^pkgname=(?:\(([^)]*)\)|(\S+))$", path.read_text(), re.M)
    assert found, path
    return [n.strip("'\"") for n in (found.group(1) or found.group(2)).split()]


PACKAGES = {name: info for p in sorted(ARCHPOWER.glob("*/.SRCINFO")) for name, info in srcinfo(p).items()}
PACKAGES.update({name: {} for p in sorted(LOONG.glob("*/PKGBUILD")) for name in pkgbuild_names(p)})
LIBVIRT = (ARCHPOWER / "libvirt" / "PKGBUILD").read_text()
EDK2 = (LOONG / "edk2" / "PKGBUILD").read_text()


def test_the_vendored_files_are_arch_s_as_copied():
    """The evidence is what tools/vendor_arch_sources.py copied, not a hand edit of it."""
    listed = set()
    for repo, entry in SOURCES.items():
        assert re.fullmatch(r"[0-9a-f]{40}", entry["commit"]), repo
        for path, digest in entry["files"].items():
            copy = VENDORED / repo.replace("/", "+") / path
            assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest, copy
            listed.add(copy)
    assert {p for p in VENDORED.rglob("*") if p.is_file() and p.name != "SOURCES.yml"} == listed
    # Arch's PKGBUILDs, maintainers' lines kept: the ports are Arch's packaging, not their own.
    assert "# Maintainer: Sven-Hendrik Haase <svenstaro@archlinux.org>" in LIBVIRT
    assert "# Maintainer: David Runge <dvzrv@archlinux.org>" in EDK2


def test_every_arch_package_exists_under_that_name():
    assert sorted(set(WANTED) - set(PACKAGES)) == []
    assert "python-libvirt" not in PACKAGES and "libvirt-python" in WANTED  # the binding's Arch name


def test_no_package_the_role_installs_conflicts_with_what_pacman_would_not_replace():
    """pacman --noconfirm answers no to removing a conflicting package, unless the new one
    replaces it; and two wanted packages must never conflict with each other."""
    for name in WANTED:
        info = PACKAGES[name]
        conflicts = set(info.get("conflicts", [])) - set(info.get("replaces", []))
        assert not conflicts & set(WANTED), name
        assert not conflicts, (name, conflicts)


def test_the_seed_hosts_packages_are_all_installed():
    # The seed's own list (qemu-full, libvirt, virt-manager, virt-viewer, virt-install, edk2-ovmf,
    # swtpm, libtpms), plus libvirt's Python binding, which every module imports.
    seed = {"qemu-full", "libvirt", "virt-manager", "virt-viewer", "virt-install", "edk2-ovmf", "swtpm", "libtpms"}
    assert seed | {"libvirt-python"} <= set(WANTED)


def test_swtpm_user_is_the_one_swtpm_s_sysusers_file_creates():
    sysusers = (ARCHPOWER / "swtpm" / "swtpm.sysusers").read_text().split()
    assert sysusers[0] == "u!"
    assert ARCH["__host_qemu_conf_defaults"] == {"swtpm_user": sysusers[1], "swtpm_group": sysusers[1]}
    assert "swtpm.sysusers" in PACKAGES["swtpm"]["source"]


def test_the_qemu_user_s_groups_hold_the_swtpm_socket_group():
    """QEMU (libvirt-qemu) must be able to open the external swtpm's socket: its group is one of
    the QEMU user's groups, as libvirt's PKGBUILD builds and sysusers it."""
    user = re.search(r"-Dqemu_user=(\S+)", LIBVIRT).group(1)
    groups = re.findall(r"echo 'm %s (\S+)' >> \"\$\{pkgdir\}\"/usr/lib/sysusers.d/libvirt.conf" % re.escape(user),
                        LIBVIRT)
    assert user == "libvirt-qemu" and groups
    assert GUEST["kvmlab_guest_swtpm_socket_group"] in groups


def test_qemu_conf_is_where_libvirt_s_package_keeps_it():
    backup = re.search(r"^backup=\((.*?)\)", LIBVIRT, re.M | re.S).group(1)
    assert HOST["__host_qemu_conf_path"].lstrip("/") in [b.strip("'\"") for b in backup.split()]


def test_the_modules_look_for_arch_s_daemons_and_virtiofsd_where_it_installs_them():
    # libvirt builds with arch-meson: --prefix /usr --sbindir bin (and filesystem links
    # /usr/sbin -> bin), so its daemons are in /usr/bin.
    meson = (ARCHPOWER / "meson" / "arch-meson").read_text()
    prefix = re.search(r"--prefix\s+(\S+)", meson).group(1)
    sbindir = re.search(r"--sbindir\s+(\S+)", meson).group(1)
    assert "arch-meson" in LIBVIRT
    for daemon in ("libvirtd", "virtqemud"):
        assert "%s/%s/%s" % (prefix, sbindir, daemon) in libvirt_common.DAEMONS
    virtiofsd = (ARCHPOWER / "virtiofsd" / "PKGBUILD").read_text()
    target = re.search(r'install -vDm 755 target/release/\$pkgname -t "\$pkgdir(/\S+)/"', virtiofsd).group(1)
    assert "%s/virtiofsd" % target in domain_preflight.VIRTIOFSD_PATHS
    firmware_dir = re.search(r'install -vDm 644 \.\./\*\$pkgname\*\.json -t "\$pkgdir(/\S+?)/?"', EDK2).group(1)
    assert firmware_dir in firmware.FIRMWARE_DIRS


def test_the_modules_name_arch_packages_the_host_role_installs():
    for part, names in domain_preflight.PACKAGES.items():
        assert set(names["arch"]) <= set(PACKAGES), part
        assert set(names["arch"]) <= set(ARCH["__host_packages"]), part
    assert "virt-firmware" in ARCH["__host_packages"]
    assert "Arch: virt-firmware" in (ROOT / "plugins" / "modules" / "firmware_enrolled_keys.py").read_text()
    source = "".join(p.read_text() for p in (ROOT / "plugins").glob("*/*.py"))
    for named in re.findall(r"Arch(?: Linux)?: ([a-z0-9][a-z0-9+.-]*[a-z0-9])", source):
        assert named in PACKAGES, "a module names %r as an Arch package: no Arch PKGBUILD has it" % named


def edk2_ovmf_files() -> set[str]:
    """The firmware files package_edk2-ovmf() installs: its install lines inside `for _arch in
    ...`, each for the arches its `if [[ "${_arch}" == 'X' ]]` / else branch leaves."""
    body = EDK2[EDK2.index("package_edk2-ovmf() {"):]
    body = body[:body.index("\n}\n")]
    arches = re.search(r"for _arch in ([A-Z0-9 ]+); do", body).group(1).split()
    files, only, branch = set(), arches, None
    for line in body.splitlines():
        cond = re.search(r"if \[\[ \"\$\{_arch\}\" == '([A-Z0-9]+)' \]\]; then", line)
        if cond:
            branch = cond.group(1)
            only = [branch]
        elif line.strip() == "else":
            only = [a for a in arches if a != branch]
        elif line.strip() == "fi":
            only = arches
        found = re.search(r'"\$pkgdir/usr/share/\$pkgbase/\$\{_arch,,\}/([A-Za-z0-9_.]+)"', line)
        if found:
            files.update("/usr/share/edk2/%s/%s" % (arch.lower(), found.group(1)) for arch in only)
    return files


def arch_firmware(tmp_path):
    """Arch's own descriptors as files, their paths moved under tmp_path, with the firmware files
    that edk2-ovmf installs (and only those). Returns (descriptor dirs, moved paths, etc dir)."""
    share, etc = tmp_path / "usr-share-qemu-firmware", tmp_path / "etc-qemu-firmware"
    share.mkdir()
    installed = edk2_ovmf_files()
    moved = {}
    for source in sorted((LOONG / "edk2").glob("*.json")):
        desc = json.loads(source.read_text())
        mapping = desc["mapping"]
        for entry in [mapping] + [mapping[k] for k in ("executable", "nvram-template") if k in mapping]:
            if "filename" not in entry:
                continue
            name = entry["filename"]
            moved[name] = str(tmp_path / name.lstrip("/"))
            entry["filename"] = moved[name]
            if name in installed:
                Path(moved[name]).parent.mkdir(parents=True, exist_ok=True)
                Path(moved[name]).write_bytes(b"\0" * 64)
        (share / source.name).write_text(json.dumps(desc))
    return (str(etc), str(share)), moved, etc


def test_edk2_ovmf_installs_the_x64_secure_boot_pair():
    files = edk2_ovmf_files()
    assert {"/usr/share/edk2/x64/OVMF_CODE.secboot.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd",
            "/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/MICROVM.4m.fd"} <= files
    assert "/usr/share/edk2/ia32/MICROVM.4m.fd" not in files  # the X64 branch is X64's only


def test_arch_ships_no_enrolled_keys_firmware(tmp_path):
    """Why the host role must build an enrolled-keys variables store on Arch: its descriptors
    offer Secure Boot, never with enrolled keys; libvirt's first pick (by file name) is x64's."""
    dirs, _moved, _etc = arch_firmware(tmp_path)
    descriptors = firmware.descriptors(dirs)
    assert len(descriptors) == len(list((LOONG / "edk2").glob("*.json")))
    found = [Path(f).name for f in firmware.matching(descriptors, "x86_64", "pc-q35-9.2", secure=True,
                                                     enrolled=False)]
    assert found[0] == "50-edk2-ovmf-x86_64-secure-4m.json"
    assert firmware.matching(descriptors, "x86_64", "pc-q35-9.2", secure=True, enrolled=True) == []


def test_on_arch_the_role_builds_enrolled_keys_from_edk2_ovmfs_secure_template(tmp_path):
    """Arch's descriptors give the module a build plan: enrol into a copy of OVMF_VARS.4m.fd, keep
    OVMF_CODE.secboot.4m.fd."""
    (etc_dir, share), moved, etc = arch_firmware(tmp_path)
    plan = firmware.plan(firmware.descriptors((etc_dir, share)), "x86_64", "/var/lib/kvmlab/firmware", etc_dir)
    assert plan["state"] == "build"
    assert plan["source_template"] == moved["/usr/share/edk2/x64/OVMF_VARS.4m.fd"]
    assert plan["template"] == "/var/lib/kvmlab/firmware/OVMF_VARS.4m.ms.fd"
    assert plan["descriptor"] == str(etc / "45-kvmlab-edk2-ovmf-x86_64-secure-4m-enrolled.json")
    desc = json.loads(plan["content"])
    assert desc["mapping"]["executable"]["filename"] == moved["/usr/share/edk2/x64/OVMF_CODE.secboot.4m.fd"]
    assert {"secure-boot", "enrolled-keys"} <= set(desc["features"])


@pytest.mark.parametrize("fact", sorted(k for k in QUOTED if k != "not_verified"))
def test_every_quoted_fact_names_its_upstream_source(fact):
    assert QUOTED[fact]["source"].strip() and "value" in QUOTED[fact], fact


def test_units_and_the_dev_kvm_mode_are_upstream_s():
    """libvirt's and systemd's own sources (quoted facts): Arch's packages enable no unit and
    ship the modular daemons' units, which the host role stops and disables (vars/main.yml);
    Arch's systemd leaves /dev/kvm 0666 in group kvm."""
    assert {u["name"] for u in HOST["__host_units"]} <= set(QUOTED["units"]["value"])
    modular = HOST["__host_modular_units"]  # a template: the daemons, times their units' suffixes
    for daemon in QUOTED["modular_daemons"]["value"]:
        assert "'%s'" % daemon in modular, daemon
    assert "['.socket', '-ro.socket', '-admin.socket', '.service']" in modular
    assert "kvm" in re.findall(r"echo 'm libvirt-qemu (\S+)'", LIBVIRT)
    assert QUOTED["dev_kvm"]["value"] == {"group": "kvm", "mode": "0666"}


def test_the_tailnet_hook_takes_the_firewall_backend_arch_s_libvirt_uses():
    """libvirt's firewall backend on Arch is upstream's default (the PKGBUILD does not set it):
    nftables first, so the tailnet hook's nftables path is the one Arch takes."""
    assert "firewall_backend_priority" not in LIBVIRT
    assert QUOTED["firewall_backend_priority"]["value"][0] == "nftables"
    hook = (ROOT / "roles" / "network" / "files" / "kvmlab-tailnet-hook.py").read_text()
    assert '"nft", "-a", "list", "chain", "ip", "libvirt_network", "guest_input"' in hook
