"""Unit tests of the pure host readers behind kvmlab.hypervisor.host_info."""

from __future__ import annotations

import hashlib
import os

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import host_info

DEBIAN_12 = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
"""
ARCH = """NAME="Arch Linux"
PRETTY_NAME="Arch Linux"
ID=arch
BUILD_ID=rolling
"""
CPUINFO_INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: 12th Gen Intel(R) Core(TM) i7-12700H
flags\t\t: fpu vme de pse msr vmx smx est tm2 ssse3
processor\t: 1
vendor_id\t: GenuineIntel
flags\t\t: fpu vme de pse msr vmx smx est tm2 ssse3
"""
CPUINFO_NESTED_AMD = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme de pse tsc msr hypervisor lahf_lm
"""


def test_os_release_debian():
    assert host_info.parse_os_release(DEBIAN_12) == {
        "id": "debian", "version_id": "12", "major": "12", "id_like": [],
        "pretty_name": "Debian GNU/Linux 12 (bookworm)",
    }


def test_os_release_arch_has_no_release():
    info = host_info.parse_os_release(ARCH)
    assert (info["id"], info["major"], info["pretty_name"]) == ("arch", "", "Arch Linux")


def test_os_release_point_release_and_single_quotes():
    info = host_info.parse_os_release("ID='ubuntu'\nVERSION_ID=\"24.04\"\nID_LIKE=debian\n")
    assert (info["id"], info["major"], info["id_like"]) == ("ubuntu", "24", ["debian"])


def test_cpuinfo_intel_with_vmx():
    cpu = host_info.parse_cpuinfo(CPUINFO_INTEL)
    assert cpu == {"vendor": "GenuineIntel", "virtualization_flags": ["vmx"],
                   "running_under_hypervisor": False, "kvm_module": "kvm_intel"}


def test_cpuinfo_nested_guest_without_flags():
    cpu = host_info.parse_cpuinfo(CPUINFO_NESTED_AMD)
    assert cpu["virtualization_flags"] == []
    assert cpu["running_under_hypervisor"] is True
    assert cpu["kvm_module"] == "kvm_amd"


def test_kvm_device_missing(tmp_path):
    dev = host_info.kvm_device(str(tmp_path / "kvm"))
    assert dev["present"] is False
    assert dev["openable"] is False
    assert dev["error"] == "%s does not exist" % (tmp_path / "kvm")


def test_kvm_device_openable(tmp_path):
    path = tmp_path / "kvm"
    path.write_text("")
    path.chmod(0o660)
    dev = host_info.kvm_device(str(path))
    assert dev["present"] and dev["openable"]
    assert dev["mode"] == "0660"
    assert dev["error"] == ""


def test_kvm_device_that_cannot_be_opened(tmp_path):
    # A directory exists but cannot be opened read-write: the error says why.
    dev = host_info.kvm_device(str(tmp_path))
    assert dev["present"] is True
    assert dev["openable"] is False
    assert dev["error"].startswith("cannot open %s: " % tmp_path)


def test_iommu(tmp_path):
    groups = tmp_path / "iommu_groups"
    groups.mkdir()
    assert host_info.iommu_state(str(groups), "quiet")["enabled"] is False
    for n in range(3):
        (groups / str(n)).mkdir()
    state = host_info.iommu_state(str(groups), "BOOT_IMAGE=/vmlinuz intel_iommu=on iommu=pt quiet")
    assert state == {"enabled": True, "groups": 3, "cmdline_options": ["intel_iommu=on", "iommu=pt"]}
    assert host_info.iommu_state(str(tmp_path / "absent"), "")["groups"] == 0


@pytest.fixture
def kernel_tree(tmp_path):
    sys_module = tmp_path / "sys_module"
    (sys_module / "kvm").mkdir(parents=True)
    (sys_module / "tun").mkdir()  # built in: listed in /sys/module, not in modules.dep
    modules = tmp_path / "lib_modules"
    modules.mkdir()
    (modules / "modules.dep").write_text(
        "kernel/arch/x86/kvm/kvm.ko.zst:\n"
        "kernel/arch/x86/kvm/kvm-intel.ko.zst: kernel/arch/x86/kvm/kvm.ko.zst\n"
        "kernel/drivers/vhost/vhost_net.ko.xz: kernel/drivers/vhost/vhost.ko.xz\n")
    (modules / "modules.builtin").write_text("kernel/drivers/net/tun.ko\n")
    return str(sys_module), str(modules)


def test_kernel_modules(kernel_tree):
    state = host_info.kernel_module_state(["kvm", "kvm_intel", "vhost_net", "tun", "bridge"], *kernel_tree)
    assert state == {
        "kvm": {"loaded": True, "available": True},
        "kvm_intel": {"loaded": False, "available": True},  # modules.dep spells it kvm-intel
        "vhost_net": {"loaded": False, "available": True},
        "tun": {"loaded": True, "available": True},
        "bridge": {"loaded": False, "available": False},
    }


def test_kernel_modules_in_a_container(tmp_path):
    # No /lib/modules/$(uname -r): nothing can be loaded, what is loaded is still reported.
    (tmp_path / "bridge").mkdir()
    state = host_info.kernel_module_state(["bridge", "vhost_net"], str(tmp_path), str(tmp_path / "none"))
    assert state == {"bridge": {"loaded": True, "available": True},
                     "vhost_net": {"loaded": False, "available": False}}


def test_systemctl_show_blocks():
    out = ("Id=libvirtd.socket\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n\n"
           "Id=virtlogd.socket\nLoadState=loaded\nActiveState=inactive\nUnitFileState=disabled\n\n"
           "Id=nope.service\nLoadState=not-found\nActiveState=inactive\nUnitFileState=\n")
    assert host_info.parse_systemctl_show(out) == {
        "libvirtd.socket": {"load_state": "loaded", "active_state": "active", "unit_file_state": "enabled"},
        "virtlogd.socket": {"load_state": "loaded", "active_state": "inactive",
                            "unit_file_state": "disabled"},
        "nope.service": {"load_state": "not-found", "active_state": "inactive", "unit_file_state": ""},
    }


def test_users():
    accounts = {"alice": {"home": "/home/alice", "uri_default": None, "config_problem": "x is a symbolic link"}}
    state = host_info.user_state(["alice", "bob"], accounts,
                                 {"libvirt": ["alice"], "kvm": [], "wheel": ["alice", "carol"]})
    assert state == {"alice": {"exists": True, "groups": ["libvirt", "wheel"], "home": "/home/alice",
                               "uri_default": None, "config_problem": "x is a symbolic link"},
                     "bob": {"exists": False, "groups": [], "home": None, "uri_default": None,
                             "config_problem": None}}


@pytest.mark.parametrize(("text", "uri"), [
    ("", None),
    ('#uri_default = "qemu:///system"\n', None),
    ('uri_default = "qemu:///system"\n', "qemu:///system"),
    ("  uri_default='qemu:///session'  # mine\n", "qemu:///session"),
    ('uri_default = "qemu:///session"\nuri_default = "qemu:///system"\n', "qemu:///system"),
])
def test_uri_default_of_a_libvirt_client_config(text, uri):
    assert host_info.parse_uri_default(text) == uri


def test_client_config_is_written_only_along_real_paths_of_the_users_own(tmp_path):
    """~/.config/libvirt/libvirt.conf is written as root: a symbolic link anywhere on the way, a
    part that is not the user's own, or a missing home, and it is left alone (with the reason)."""
    uid = os.getuid()
    home = tmp_path / "home"
    assert host_info.config_problem(str(home), uid) == "the home directory %s does not exist" % home
    home.mkdir()
    assert host_info.config_problem(str(home), uid) is None  # nothing yet: the role makes it
    (home / ".config" / "libvirt").mkdir(parents=True)
    (home / ".config" / "libvirt" / "libvirt.conf").write_text('uri_default = "qemu:///system"\n')
    assert host_info.config_problem(str(home), uid) is None

    conf = home / ".config" / "libvirt" / "libvirt.conf"
    conf.unlink()
    conf.symlink_to("/etc/shadow")
    assert host_info.config_problem(str(home), uid) == "%s is a symbolic link" % conf
    conf.unlink()
    conf.mkdir()
    assert host_info.config_problem(str(home), uid) == "%s is not a regular file" % conf
    conf.rmdir()

    target = tmp_path / "elsewhere"
    target.mkdir()
    (home / ".config" / "libvirt").rmdir()
    (home / ".config").rmdir()
    (home / ".config").symlink_to(target)
    assert host_info.config_problem(str(home), uid) == "%s is a symbolic link" % (home / ".config")
    (home / ".config").unlink()
    (home / ".config").mkdir()
    if uid == 0:  # only root can hand a directory to another user
        os.chown(home / ".config", 4242, 4242)
        assert host_info.config_problem(str(home), uid) == (
            "%s belongs to uid 4242, not to the user (uid 0)" % (home / ".config"))


# The client config writer: real files in a temporary home, as the running user.
UID, GID = os.getuid(), os.getgid()
URI = "qemu:///system"


def _conf(home):
    return home / ".config" / "libvirt" / "libvirt.conf"


def test_client_uri_is_made_from_nothing_then_left_alone(tmp_path):
    before, after = host_info.set_client_uri(str(tmp_path), (UID, GID), URI, check=True)
    assert (before, after) == ("", 'uri_default = "qemu:///system"\n')
    assert not (tmp_path / ".config").exists()  # check mode makes nothing
    host_info.set_client_uri(str(tmp_path), (UID, GID), URI, check=False)
    assert _conf(tmp_path).read_text() == 'uri_default = "qemu:///system"\n'
    assert oct(_conf(tmp_path).stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / ".config" / "libvirt").stat().st_mode & 0o777) == "0o755"
    assert host_info.set_client_uri(str(tmp_path), (UID, GID), URI, check=False) == (after, after)
    assert [p.name for p in (tmp_path / ".config" / "libvirt").iterdir()] == ["libvirt.conf"]  # no temp left


def test_client_uri_keeps_the_other_lines_and_replaces_the_last_setting(tmp_path):
    _conf(tmp_path).parent.mkdir(parents=True)
    _conf(tmp_path).write_text('# mine\n#uri_default = "test:///default"\nkeepalive_interval = 5\n')
    after = host_info.set_client_uri(str(tmp_path), (UID, GID), URI, check=False)[1]
    assert after == '# mine\nuri_default = "qemu:///system"\nkeepalive_interval = 5\n'
    assert host_info.parse_uri_default(_conf(tmp_path).read_text()) == URI


@pytest.mark.parametrize("part", [".config", ".config/libvirt", ".config/libvirt/libvirt.conf"])
def test_a_link_anywhere_on_the_path_is_refused_and_nothing_lands_behind_it(tmp_path, part):
    home, outside = tmp_path / "home", tmp_path / "outside"
    home.mkdir()
    outside.mkdir()
    (home / part).parent.mkdir(parents=True, exist_ok=True)
    target = outside / "file" if part.endswith(".conf") else outside
    if part.endswith(".conf"):
        target.write_text("root's\n")
    (home / part).symlink_to(target)
    with pytest.raises(host_info.ConfigRefused, match="symbolic link"):
        host_info.set_client_uri(str(home), (UID, GID), URI, check=False)
    assert sorted(p.name for p in outside.iterdir()) == (["file"] if part.endswith(".conf") else [])
    if part.endswith(".conf"):
        assert target.read_text() == "root's\n"


def test_a_hard_link_to_another_file_is_refused_neither_read_nor_written(tmp_path):
    """Where hard links to others' files are allowed (fs.protected_hardlinks=0), keeping the
    file's lines would copy, say, /etc/shadow into a file the user reads."""
    _conf(tmp_path).parent.mkdir(parents=True)
    other = tmp_path / "shadow"
    other.write_text("root:x:0:0\n")
    os.link(other, _conf(tmp_path))
    with pytest.raises(host_info.ConfigRefused, match="other hard links"):
        host_info.set_client_uri(str(tmp_path), (UID, GID), URI, check=False)
    assert other.read_text() == "root:x:0:0\n" and _conf(tmp_path).read_text() == "root:x:0:0\n"


def test_a_link_swapped_in_after_a_directory_is_opened_does_not_redirect_the_write(tmp_path, monkeypatch):
    """The race the old path-based write lost: the directory is checked (opened), then the user
    replaces it with a link to a root directory. The write goes to the directory that was opened."""
    home, outside = tmp_path / "home", tmp_path / "outside"
    (home / ".config" / "libvirt").mkdir(parents=True)
    outside.mkdir()
    real_open = os.open

    def swapping_open(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if path == "libvirt" and not (home / ".config" / "moved").exists():
            (home / ".config" / "libvirt").rename(home / ".config" / "moved")
            (home / ".config" / "libvirt").symlink_to(outside)
        return fd

    monkeypatch.setattr(os, "open", swapping_open)
    host_info.set_client_uri(str(home), (UID, GID), URI, check=False)
    monkeypatch.undo()
    assert list(outside.iterdir()) == []
    assert (home / ".config" / "moved" / "libvirt.conf").read_text() == 'uri_default = "qemu:///system"\n'


@pytest.mark.skipif(os.getuid() != 0, reason="chown to another user needs root")
def test_a_directory_of_another_user_is_refused(tmp_path):
    (tmp_path / ".config").mkdir()
    os.chown(tmp_path / ".config", 4242, 4242)
    with pytest.raises(host_info.ConfigRefused, match="belongs to uid 4242"):
        host_info.set_client_uri(str(tmp_path), (1000, 1000), URI, check=False)


@pytest.mark.parametrize("uri", ['qemu:///system"\nuri_default = "x', "qemu:///sys tem", "no-scheme", "a://b\\c"])
def test_a_uri_that_could_change_the_file_is_refused(tmp_path, uri):
    with pytest.raises(ValueError, match="not a plain libvirt URI"):
        host_info.set_client_uri(str(tmp_path), (UID, GID), uri, check=False)
    assert list(tmp_path.iterdir()) == []


def test_file_state_predicts_what_lineinfile_and_copy_would_compare(tmp_path):
    conf = tmp_path / "qemu.conf"
    conf.write_bytes(b'# swtpm_user = "swtpm"\n#user = "root"\nswtpm_user = "tss"\n  # swtpm_group = "x"\r\n'
                     b'remember_owner=0\nnot a key\n\xff\n')
    os.chmod(conf, 0o600)
    state = host_info.file_state(str(conf))
    assert state["exists"] and state["mode"] == "0600" and state["sha1"] == hashlib.sha1(conf.read_bytes()).hexdigest()
    # The last line lineinfile's '^\s*#?\s*<key>\s*=' finds, as it is (a \r stays: lineinfile would rewrite it).
    assert state["lines"] == {"swtpm_user": 'swtpm_user = "tss"', "user": '#user = "root"',
                              "swtpm_group": '  # swtpm_group = "x"\r', "remember_owner": "remember_owner=0"}
    assert host_info.file_state(str(tmp_path / "missing"))["exists"] is False


def test_file_state_of_a_huge_file_never_matches(tmp_path, monkeypatch):
    monkeypatch.setattr(host_info, "FILE_READ_LIMIT", 16)
    big = tmp_path / "big.conf"
    big.write_text("swtpm_user = \"tss\"\n")
    state = host_info.file_state(str(big))
    assert state["exists"] and state["sha1"] is None and state["lines"] is None


PACKAGES = {"debian": ["qemu-utils", "swtpm"], "debian-12": ["iptables"], "debian-13": ["nftables"],
            "arch": ["qemu-full", "dnsmasq"], "*": ["htop", "swtpm"]}


@pytest.mark.parametrize("text,wanted", [
    (DEBIAN_12, ["qemu-utils", "swtpm", "iptables", "htop"]),
    (DEBIAN_12.replace('VERSION_ID="12"', 'VERSION_ID="13"'), ["qemu-utils", "swtpm", "nftables", "htop"]),
    (ARCH, ["qemu-full", "dnsmasq", "htop", "swtpm"]),
    ("ID=fedora\nVERSION_ID=41\n", ["htop", "swtpm"]),
])
def test_the_hosts_packages_are_its_id_then_its_release_then_every_distributions(text, wanted):
    assert host_info.wanted_packages(PACKAGES, host_info.parse_os_release(text)) == wanted


@pytest.mark.parametrize("text,manager", [
    (DEBIAN_12, "dpkg"), ("ID=ubuntu\nID_LIKE=debian\n", "dpkg"), (ARCH, "pacman"),
    ("ID=endeavouros\nID_LIKE=arch\n", "pacman"), ("ID=fedora\n", None),
])
def test_the_package_database_follows_the_distribution_family(text, manager):
    assert host_info.package_manager(host_info.parse_os_release(text)) == manager


def runner(rc: int, out: str, calls: list | None = None):
    def run(argv):
        if calls is not None:
            calls.append(argv)
        return rc, out, ""
    return run


def test_dpkg_reports_missing_the_packages_it_does_not_list_as_installed():
    calls: list = []
    # Real dpkg-query output (bookworm): qemu-utils installed, swtpm removed with its
    # configuration kept, htop unknown (left out of stdout, rc 1); a held package counts.
    out = "qemu-utils\tii \nswtpm\trc \nbtrfs-progs\thi \n"
    names = ["qemu-utils", "swtpm", "htop", "btrfs-progs", "foo:amd64"]
    assert host_info.missing_packages("dpkg", names, runner(1, out, calls)) == ["swtpm", "htop", "foo:amd64"]
    # The qualified name is not passed to the query; "--" keeps a name from being an option.
    assert calls == [["dpkg-query", "-W", "-f", "${Package}\t${db:Status-Abbrev}\n", "--",
                      "qemu-utils", "swtpm", "htop", "btrfs-progs"]]


def test_pacman_reports_missing_what_deptest_prints():
    calls: list = []
    assert host_info.missing_packages("pacman", ["qemu-full", "dnsmasq", "libvirt>=10"],
                                      runner(127, "dnsmasq\n", calls)) == ["dnsmasq", "libvirt>=10"]
    assert calls == [["pacman", "-T", "--", "qemu-full", "dnsmasq"]]
    assert host_info.missing_packages("pacman", ["qemu-full"], runner(0, "")) == []


@pytest.mark.parametrize("manager,rc", [("dpkg", 2), ("dpkg", -1), ("pacman", 1), ("pacman", -1), (None, 0)])
def test_a_failed_query_or_an_unknown_distribution_counts_every_package_missing(manager, rc):
    # The install task then runs and reports what is wrong; a no-op is never claimed unread.
    assert host_info.missing_packages(manager, ["a", "b"], runner(rc, "a\tii \n")) == ["a", "b"]
