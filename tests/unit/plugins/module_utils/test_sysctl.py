"""libvirt_network's IP forwarding: the sysctl.d file read as systemd-sysctl reads it (the last
assignment wins), rewritten only where it must be, and the live value set, check mode truthful."""

from __future__ import annotations

import os

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import sysctl

KEY = "net.ipv4.ip_forward"


@pytest.mark.parametrize("text,value", [
    ("", None), ("net.ipv4.ip_forward=1\n", "1"), ("net.ipv4.ip_forward = 0\n", "0"),
    ("net/ipv4/ip_forward=1", "1"), ("-net.ipv4.ip_forward = 1\n", "1"),
    ("# net.ipv4.ip_forward = 1\n; net.ipv4.ip_forward = 1\n", None),
    ("net.ipv4.ip_forward = 1\nnet.ipv4.ip_forward = 0\n", "0"),
    ("net.ipv4.ip_forward_update_priority = 1\n", None),
])
def test_the_file_is_read_as_systemd_sysctl_reads_it(text, value):
    assert sysctl.file_value(text, KEY) == value


def test_the_file_is_rewritten_only_where_it_must_be():
    assert sysctl.plan_file("net.ipv4.ip_forward=1\n", KEY, "1") is None  # as ansible.posix.sysctl wrote it
    assert sysctl.plan_file("", KEY, "1") == "net.ipv4.ip_forward = 1\n"
    kept = "# mine\nvm.swappiness = 10"
    assert sysctl.plan_file(kept, KEY, "1") == kept + "\nnet.ipv4.ip_forward = 1\n"
    text = "net.ipv4.ip_forward = 0\nvm.swappiness = 10\nnet.ipv4.ip_forward=0\n"
    new = sysctl.plan_file(text, KEY, "1")
    assert new == "net.ipv4.ip_forward = 0\nvm.swappiness = 10\nnet.ipv4.ip_forward = 1\n"
    assert sysctl.file_value(new, KEY) == "1"


class Module:
    def __init__(self, check_mode):
        self.check_mode = check_mode

    def atomic_move(self, src, dest, keep_dest_attrs=True):
        os.replace(src, dest)


@pytest.mark.parametrize("check_mode", [True, False])
def test_the_live_value_and_the_file_are_set_and_check_mode_writes_nothing(tmp_path, monkeypatch, check_mode):
    live = tmp_path / "ip_forward"
    live.write_text("0\n")
    monkeypatch.setattr(sysctl, "proc_path", lambda key: str(live))
    conf = tmp_path / "sysctl.d" / "90-kvmlab-forwarding.conf"
    done = sysctl.converge(Module(check_mode), KEY, "1", str(conf))
    assert done == {"changed": True, "before": {"live": "0", "file": None}, "after": {"live": "1", "file": "1"}}
    if check_mode:
        assert live.read_text() == "0\n" and not conf.exists()
        return
    assert live.read_text() == "1\n" and conf.read_text() == "net.ipv4.ip_forward = 1\n"
    assert oct(conf.stat().st_mode & 0o777) == "0o644"
    assert sysctl.converge(Module(False), KEY, "1", str(conf))["changed"] is False
