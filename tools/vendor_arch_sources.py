# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copy Arch Linux's own packaging files, byte for byte, into tests/unit/fixtures/arch/, from
local git mirrors of two repositories that keep Arch's PKGBUILDs with their maintainers' lines:
kth5/archpower (the Arch POWER port) and loongarchlinux/extra (the LoongArch port). No Arch
machine or mirror is reachable here, so these files are the evidence tests/unit/test_arch_facts.py
derives every Arch package name, user, path and firmware descriptor from. Each file is recorded
in SOURCES.yml with its repository, commit, path and sha256, and the test checks the copies
against those sums, so a hand edit of the evidence fails.

Arch's packaging files are under the 0BSD licence (each repository's LICENSE), which asks for
no notice; the commits in SOURCES.yml say where they came from.

Usage: python tools/vendor_arch_sources.py ARCHPOWER_GIT_DIR LOONGARCH_EXTRA_GIT_DIR
(the mirrors, such as the search tool's `fetch` of github:kth5/archpower and
github:loongarchlinux/extra, leave them under /work/.mirror/<owner>+<name>/repo)."""

import hashlib
import subprocess
import sys
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parents[1] / "tests" / "unit" / "fixtures" / "arch"
SOURCES = {
    "kth5/archpower": ("09b4c01822", [
        "qemu/.SRCINFO", "libvirt/.SRCINFO", "libvirt/PKGBUILD", "virt-manager/.SRCINFO",
        "virt-viewer/.SRCINFO", "swtpm/.SRCINFO", "swtpm/swtpm.sysusers", "libtpms/.SRCINFO",
        "virtiofsd/.SRCINFO", "virtiofsd/PKGBUILD", "dnsmasq/.SRCINFO", "nftables/.SRCINFO",
        "openbsd-netcat/.SRCINFO", "dmidecode/.SRCINFO", "btrfs-progs/.SRCINFO", "7zip/.SRCINFO",
        "meson/arch-meson", "filesystem/PKGBUILD"]),
    "loongarchlinux/extra": ("6ed5cbcf1b", [
        "libvirt-python/PKGBUILD", "python-lxml/PKGBUILD", "virt-firmware/PKGBUILD", "edk2/PKGBUILD",
        "edk2/50-edk2-ovmf-x86_64-secure-4m.json", "edk2/60-edk2-ovmf-x86_64-4m.json",
        "edk2/60-edk2-ovmf-microvm-4m.json", "edk2/80-edk2-ovmf-ia32-on-x86_64-secure-4m.json",
        "edk2/81-edk2-ovmf-ia32-on-x86_64-4m.json"]),
}


def main(archpower, loongarch):
    mirrors = {"kth5/archpower": archpower, "loongarchlinux/extra": loongarch}
    record = {}
    for repo, (commit, paths) in SOURCES.items():
        git = ["git", "--git-dir", mirrors[repo]]
        full = subprocess.run([*git, "rev-parse", commit + "^{commit}"], check=True, capture_output=True,
                              text=True).stdout.strip()
        date = subprocess.run([*git, "log", "-1", "--format=%cs", full], check=True, capture_output=True,
                              text=True).stdout.strip()
        files = {}
        for path in paths:
            data = subprocess.run([*git, "show", "%s:%s" % (full, path)], check=True, capture_output=True).stdout
            target = OUT / repo.replace("/", "+") / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            files[path] = hashlib.sha256(data).hexdigest()
        record[repo] = {"commit": full, "date": date, "files": files}
    (OUT / "SOURCES.yml").write_text(
        "---\n# Written by tools/vendor_arch_sources.py: where each file under this directory was copied\n"
        "# from, byte for byte, and its sha256.\n" + yaml.safe_dump(record, sort_keys=True))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
