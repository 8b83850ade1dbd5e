"""libvirt network XML: parsing, comparing and editing only the owned parts."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ansible_collections.kvmlab.hypervisor.plugins.module_utils import network as netxml

FIXTURE = (Path(__file__).parent / "fixtures" / "network-default-libvirt9.xml").read_text()
WIN11 = ("52:54:00:ab:93:44", "win11", "192.168.122.136")
SPEC = {"name": "default", "bridge": "virbr0", "forward": "nat", "address": "192.168.122.1", "prefix": 24,
        "dhcp": {"start": "192.168.122.2", "end": "192.168.122.254"},
        "hosts": [{"mac": "52:54:00:AB:93:44", "name": "win11", "ip": "192.168.122.136"}]}


def test_parse_libvirt_output():
    parsed = netxml.parse(FIXTURE)
    assert parsed == {"bridge": "virbr0", "forward": "nat", "address": "192.168.122.1", "prefix": 24,
                      "ranges": [("192.168.122.2", "192.168.122.254")],
                      "range": ("192.168.122.2", "192.168.122.254"), "hosts": [WIN11]}


def test_spec_matching_libvirt_output_has_nothing_to_do():
    want = netxml.desired(SPEC)  # MAC case does not matter
    current = netxml.parse(FIXTURE)
    assert netxml.restart_differences(current, want) == []
    assert netxml.dhcp_updates(current, want) == []


def test_isolated_network_without_forward():
    xml = "<network><name>x</name><bridge name='virbr5'/><ip address='10.0.0.1' prefix='24'/></network>"
    assert netxml.parse(xml)["forward"] == "isolated"
    assert netxml.parse(xml)["range"] is None


def test_changed_reservation_is_delete_then_add():
    want = netxml.desired(dict(SPEC, hosts=[{"mac": "52:54:00:ab:93:44", "name": "win11", "ip": "192.168.122.137"}]))
    steps = netxml.dhcp_updates(netxml.parse(FIXTURE), want)
    assert steps == [
        ("delete", "host", '<host mac="52:54:00:ab:93:44" name="win11" ip="192.168.122.136" />'),
        ("add", "host", '<host mac="52:54:00:ab:93:44" name="win11" ip="192.168.122.137" />'),
    ]


def test_range_change_and_host_removal():
    want = netxml.desired(dict(SPEC, dhcp={"start": "192.168.122.100", "end": "192.168.122.200"}, hosts=[]))
    steps = netxml.dhcp_updates(netxml.parse(FIXTURE), want)
    assert [s[:2] for s in steps] == [("delete", "range"), ("delete", "host"), ("add", "range")]
    assert steps[2][2] == "<range start='192.168.122.100' end='192.168.122.200'/>"


def test_bridge_and_subnet_need_a_restart():
    want = netxml.desired(dict(SPEC, bridge="virbr9", address="10.10.0.1", prefix=16))
    assert netxml.restart_differences(netxml.parse(FIXTURE), want) == ["bridge", "address", "prefix"]


def test_edit_keeps_what_the_spec_does_not_own():
    spec = dict(SPEC, bridge="virbr9", hosts=[{"name": "kali", "ip": "192.168.122.140"}])
    root = ET.fromstring(netxml.edit_xml(FIXTURE, spec))
    assert root.findtext("uuid") == "291c540c-6b9b-431a-be8d-35fc3cf7b4ba"
    assert root.find("mac").get("address") == "52:54:00:4e:c7:47"
    assert root.find("dns/host/hostname").text == "nas"
    assert root.find("forward/nat/port") is not None
    assert root.find("bridge").get("name") == "virbr9"
    # Same subnet: libvirt's netmask form is kept.
    assert root.find("ip").get("netmask") == "255.255.255.0"
    assert [h.attrib for h in root.findall("ip/dhcp/host")] == [{"name": "kali", "ip": "192.168.122.140"}]
    assert netxml.parse(ET.tostring(root, encoding="unicode"))["hosts"] == [("", "kali", "192.168.122.140")]


def test_edit_subnet_and_forward_mode():
    spec = dict(SPEC, forward="route", address="10.0.5.1", prefix=16,
                dhcp={"start": "10.0.5.10", "end": "10.0.5.99"}, hosts=[])
    parsed = netxml.parse(netxml.edit_xml(FIXTURE, spec))
    assert parsed == {"bridge": "virbr0", "forward": "route", "address": "10.0.5.1", "prefix": 16,
                      "ranges": [("10.0.5.10", "10.0.5.99")], "range": ("10.0.5.10", "10.0.5.99"), "hosts": []}
    # NAT's port range belongs to NAT mode; it goes with it.
    assert ET.fromstring(netxml.edit_xml(FIXTURE, spec)).find("forward/nat") is None


def test_new_network_round_trips():
    xml = netxml.new_xml(dict(SPEC, name="lab", bridge="virbr7", forward="isolated"))
    parsed = netxml.parse(xml)
    assert ET.fromstring(xml).findtext("name") == "lab"
    assert parsed["forward"] == "isolated"
    assert parsed["hosts"] == [WIN11]
    assert netxml.dhcp_updates(parsed, netxml.desired(dict(SPEC, bridge="virbr7", forward="isolated"))) == []


def test_summary_for_diffs():
    assert netxml.summary(netxml.parse(FIXTURE)) == {
        "bridge": "virbr0", "forward": "nat", "ip": "192.168.122.1/24",
        "dhcp_range": "192.168.122.2 - 192.168.122.254", "hosts": ["52:54:00:ab:93:44 win11 192.168.122.136"]}
