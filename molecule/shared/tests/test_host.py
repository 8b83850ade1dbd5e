"""The host role's result, asked of the system and of libvirt on the test host."""

from __future__ import annotations

import pytest

DEBIAN_PACKAGES = [
    "qemu-system-x86", "qemu-utils", "libvirt-daemon-system", "libvirt-clients", "virtinst",
    "ovmf", "swtpm", "swtpm-tools", "dnsmasq-base", "python3-libvirt", "python3-lxml",
    "virt-manager", "virt-viewer",
]
SOCKETS = ["libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket",
           "virtlogd.socket", "virtlockd.socket"]


@pytest.mark.parametrize("name", DEBIAN_PACKAGES)
def test_package_installed(host, name):
    assert host.package(name).is_installed


@pytest.mark.parametrize("name", SOCKETS)
def test_socket_enabled_and_active(host, name):
    unit = host.service(name)
    assert unit.is_enabled
    assert unit.is_running


def test_libvirtd_service_enabled(host):
    assert host.service("libvirtd.service").is_enabled


def test_virsh_answers(host):
    out = host.check_output("virsh -c qemu:///system version")
    assert "Running hypervisor: QEMU" in out


def test_domcapabilities_offer_kvm_and_efi(host):
    caps = host.check_output("virsh -c qemu:///system domcapabilities --virttype kvm --machine q35")
    assert "<domain>kvm</domain>" in caps
    assert "<value>efi</value>" in caps
    # libvirt lists every virt type it can use in the host capabilities.
    assert "<domain type='kvm'" in host.check_output("virsh -c qemu:///system capabilities")


def test_dev_kvm_usable_by_qemu_group(host):
    dev = host.file("/dev/kvm")
    assert dev.group == "kvm"
    assert dev.mode == 0o660
    # QEMU runs as libvirt-qemu (group kvm): it must be able to open the device read-write.
    host.run_test("runuser -u libvirt-qemu -- sh -c 'exec 3<>/dev/kvm'")
    rule = host.file("/etc/udev/rules.d/65-kvmlab-kvm.rules")
    assert 'KERNEL=="kvm", GROUP="kvm", MODE="0660"' in rule.content_string


def test_qemu_conf_edited_in_place(host):
    conf = host.file("/etc/libvirt/qemu.conf").content_string
    lines = [line.strip() for line in conf.splitlines()]
    assert lines.count('swtpm_user = "tss"') == 1
    assert lines.count('swtpm_group = "tss"') == 1
    # The distribution's file, with its documentation, is still there.
    assert len(lines) > 500
    assert "#user = " in conf


def test_swtpm_user_exists(host):
    assert host.user("tss").exists


def test_admin_in_libvirt_group(host):
    assert {"libvirt", "kvm"} <= set(host.user("kvmlab").groups)
    # ... and really manages qemu:///system without sudo, by default: the seed's commands as the
    # admin (a login shell, so virsh reads the admin's own ~/.config/libvirt/libvirt.conf).
    assert host.check_output("runuser -l kvmlab -c 'virsh uri'") == "qemu:///system"
    listed = host.check_output("runuser -l kvmlab -c 'virsh list --all --name'").split()
    assert {"win11", "arch", "kali"} <= set(listed), listed
    config = host.file(host.user("kvmlab").home + "/.config/libvirt/libvirt.conf")
    assert config.user == "kvmlab" and config.mode == 0o644
