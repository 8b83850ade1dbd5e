"""host_facts's view of what libvirt's guests hold: from libvirt; from libvirt's own files when its
daemon is stopped; empty only before libvirt is installed; any other failure is an error, never
an empty answer that would turn the checks against the host's guests off."""

from __future__ import annotations

import types

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import libvirt_common
from ansible_collections.kvmlab.hypervisor.plugins.modules import host_facts as mod

DOMAIN = ("<domain><name>%s</name><os><nvram>/mnt/vm/%s_VARS.fd</nvram></os><cputune><vcpupin vcpu='0' "
          "cpuset='2-3'/></cputune><devices><disk device='disk'><source file='/mnt/vm/%s.qcow2'/></disk>"
          "<interface><mac address='52:54:00:00:00:01'/></interface></devices></domain>")
POOL = "<pool><name>vm</name><target><path>/mnt/vm</path></target></pool>"


class Error(Exception):
    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code

    def get_error_code(self):
        return self.code


class Dom:
    def __init__(self, name, gone=False):
        self.name_, self.gone = name, gone

    def XMLDesc(self, flags):
        if self.gone:
            raise Error("Domain not found", 42)
        return DOMAIN % (self.name_, self.name_, self.name_)


class Pool:
    def XMLDesc(self, flags):
        return POOL


def fake(monkeypatch, opened=None, error=None):
    def open_ro(uri):
        if error is not None:
            raise Error(error)
        return types.SimpleNamespace(listAllDomains=lambda flags: opened, listAllStoragePools=lambda: [Pool()])

    monkeypatch.setattr(mod, "libvirt", types.SimpleNamespace(
        openReadOnly=open_ro, libvirtError=Error, VIR_CONNECT_LIST_DOMAINS_PERSISTENT=1, VIR_DOMAIN_XML_INACTIVE=2,
        VIR_ERR_NO_DOMAIN=42, VIR_ERR_NO_STORAGE_POOL=49))


def test_read_from_libvirt_and_a_guest_undefined_meanwhile_is_left_out(monkeypatch):
    fake(monkeypatch, opened=[Dom("win11"), Dom("gone", gone=True)])
    pinned, owned, pools, source = mod.libvirt_state("qemu:///system")
    assert pinned == {"win11": [2, 3]} and pools == {"vm": "/mnt/vm"} and source == "libvirt"
    assert owned == {"win11": {"files": ["/mnt/vm/win11.qcow2", "/mnt/vm/win11_VARS.fd"],
                               "macs": ["52:54:00:00:00:01"]}}


def test_a_stopped_daemon_is_read_from_its_files(monkeypatch, tmp_path):
    (tmp_path / "qemu").mkdir()
    (tmp_path / "storage").mkdir()
    (tmp_path / "qemu" / "arch.xml").write_text(DOMAIN % ("arch", "arch", "arch"))
    (tmp_path / "storage" / "vm.xml").write_text(POOL)
    monkeypatch.setattr(mod, "DEFINITIONS", {"domains": str(tmp_path / "qemu/*.xml"),
                                             "pools": str(tmp_path / "storage/*.xml")})
    monkeypatch.setattr(libvirt_common, "DAEMONS", (str(tmp_path / "qemu"),))  # installed
    fake(monkeypatch, error="Failed to connect socket to '/var/run/libvirt/libvirt-sock-ro': Connection refused")
    pinned, owned, pools, source = mod.libvirt_state("qemu:///system")
    assert pinned == {"arch": [2, 3]} and "/mnt/vm/arch.qcow2" in owned["arch"]["files"] and pools == {"vm": "/mnt/vm"}
    assert source.startswith("files: libvirt does not answer at qemu:///system (Failed to connect")


def test_empty_only_before_libvirt_is_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(libvirt_common, "DAEMONS", (str(tmp_path / "none"),))
    fake(monkeypatch, error="Failed to connect socket: No such file or directory")
    assert mod.libvirt_state("qemu:///system") == ({}, {}, {}, "none")
    monkeypatch.setattr(mod, "libvirt", None)
    assert mod.libvirt_state("qemu:///system") == ({}, {}, {}, "none")


def test_another_uri_that_does_not_answer_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setattr(libvirt_common, "DAEMONS", (str(tmp_path / "none"),))
    fake(monkeypatch, error="Cannot recv data: Connection reset by peer")
    with pytest.raises(mod.LibvirtStateError, match=r"at qemu\+ssh://hv/system: Cannot recv data"):
        mod.libvirt_state("qemu+ssh://hv/system")
