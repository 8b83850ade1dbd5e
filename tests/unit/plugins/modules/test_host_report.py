"""host_report's guest agents: asked only over a connected channel, waited for within agent_wait
(never for a guest without a channel), and named when they do not answer."""

from __future__ import annotations

import types

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.modules import host_report as mod

CHANNEL = ("<domain><devices><channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' "
           "state='%s'/></channel></devices></domain>")


class Error(Exception):
    def __init__(self, code):
        super().__init__("agent error %d" % code)
        self.code = code

    def get_error_code(self):
        return self.code


FAKE = types.SimpleNamespace(libvirtError=Error, VIR_ERR_OPERATION_DENIED=55,
                             VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT=1)


class Dom:
    def __init__(self, name, xml, answers_after=0, error=None):
        self._name, self.xml, self.calls, self.answers_after, self.error = name, xml, 0, answers_after, error

    def name(self):
        return self._name

    def isActive(self):
        return True

    def XMLDesc(self, flags):
        return self.xml

    def interfaceAddresses(self, source):
        self.calls += 1
        if self.error is not None:
            raise Error(self.error)
        if self.calls <= self.answers_after:
            raise Error(86)  # VIR_ERR_AGENT_UNRESPONSIVE
        addrs = [{"addr": "192.168.122.9"}, {"addr": "fe80::1"}, {"addr": "127.0.0.1"}]
        return {"eth0": {"hwaddr": "52:54:00:AA:BB:CC", "addrs": addrs}}


class Module:
    def __init__(self):
        self.warnings = []

    def warn(self, message):
        self.warnings.append(message)


@pytest.fixture(autouse=True)
def fake(monkeypatch):
    monkeypatch.setattr(mod, "libvirt", FAKE)
    monkeypatch.setattr(mod.time, "sleep", lambda s: None)


def test_an_agent_is_asked_only_over_a_connected_channel():
    assert mod.agent_of(Dom("a", "<domain><devices/></domain>"), mod.ET.fromstring("<domain><devices/></domain>")) \
        == ("none", {})
    dom = Dom("b", CHANNEL % "disconnected")
    assert mod.agent_of(dom, mod.ET.fromstring(dom.xml)) == ("disconnected", {}) and dom.calls == 0
    dom = Dom("c", CHANNEL % "connected")
    assert mod.agent_of(dom, mod.ET.fromstring(dom.xml)) == ("answering", {"52:54:00:aa:bb:cc": "192.168.122.9"})
    dom = Dom("d", CHANNEL % "connected", error=55)
    assert mod.agent_of(dom, mod.ET.fromstring(dom.xml))[0] == "not asked (read-only connection)"


def test_the_wait_ends_when_the_agents_answer_and_skips_guests_without_one():
    booting, blank = Dom("win11", CHANNEL % "connected", answers_after=3), Dom("blank", "<domain><devices/></domain>")
    module = Module()
    mod.wait_for_agents(module, [booting, blank], 60)
    assert booting.calls == 4 and blank.calls == 0 and module.warnings == []


def test_a_wait_that_runs_out_names_the_guests(monkeypatch):
    clock = iter(range(0, 1000, 5))
    monkeypatch.setattr(mod.time, "monotonic", lambda: next(clock))
    silent = Dom("kali", CHANNEL % "connected", answers_after=10 ** 6)
    module = Module()
    mod.wait_for_agents(module, [silent], 20)
    assert module.warnings == ["the guest agents of kali did not answer within 20 seconds (agent_wait); the report "
                               "shows them as they are."]
    assert 1 <= silent.calls <= 6
    mod.wait_for_agents(module, [Dom("x", CHANNEL % "connected", answers_after=10 ** 6)], 0)
    assert len(module.warnings) == 1  # 0: no wait, no warning
