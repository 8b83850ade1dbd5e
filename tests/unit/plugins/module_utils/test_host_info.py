"""Unit tests of the pure host readers behind kvmlab.hypervisor.host_info."""

from __future__ import annotations

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
