"""Planning of pool and volume changes: what runs, in which order, and what is refused."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import pool, volume

OK = {"path": "/mnt/vm/iso", "active": True, "autostart": True}


def spec(**kw):
    return dict({"name": "iso", "path": "/mnt/vm/iso", "state": "present", "active": True, "autostart": True,
                 "path_exists": True}, **kw)


def test_converged_pool_needs_nothing():
    assert pool.plan(spec(), OK) == []
    assert pool.plan(spec(path="/mnt/vm/iso/"), OK) == []


def test_new_pool_is_defined_built_started_and_autostarted():
    assert pool.plan(spec(path_exists=False), None) == ["define", "build", "start", "autostart_on"]
    assert pool.plan(spec(), None) == ["define", "start", "autostart_on"]


@pytest.mark.parametrize(("current", "actions"), [
    (dict(OK, active=False), ["start"]),
    (dict(OK, autostart=False), ["autostart_on"]),
    (dict(OK, path="/srv/iso"), ["redefine", "stop", "start"]),
    (dict(OK, path="/srv/iso", active=False), ["redefine", "start"]),
])
def test_drift_is_repaired(current, actions):
    assert pool.plan(spec(), current) == actions


def test_absent_pool_is_stopped_and_undefined_never_deleted():
    assert pool.plan(spec(state="absent"), OK) == ["stop", "undefine"]
    assert pool.plan(spec(state="absent"), None) == []


def test_redefine_keeps_uuid():
    xml = "<pool type='dir'><name>iso</name><uuid>u-1</uuid><target><path>/srv/iso</path></target></pool>"
    out = ET.fromstring(pool.with_target_path(xml, "/mnt/vm/iso"))
    assert (out.findtext("uuid"), out.findtext("target/path")) == ("u-1", "/mnt/vm/iso")
    assert pool.target_path(pool.pool_xml("iso", "/mnt/vm/iso")) == "/mnt/vm/iso"


VOL = {"pool": "vm", "name": "win11.qcow2", "capacity": "40G", "format": "qcow2"}
G40 = 40 * 2**30


def test_missing_volume_is_created_as_qcow2_1_1():
    assert volume.plan(VOL, G40, None) == ("create", None)
    xml = ET.fromstring(volume.volume_xml(dict(VOL, backing_file="/mnt/vm/base.qcow2"), G40))
    assert xml.findtext("capacity") == str(G40)
    assert xml.find("target/format").get("type") == "qcow2"
    assert xml.findtext("target/compat") == "1.1"
    assert xml.findtext("backingStore/path") == "/mnt/vm/base.qcow2"


def test_existing_volume_is_left_alone():
    assert volume.plan(VOL, G40, {"capacity": G40, "format": "qcow2"}) == (None, None)


def test_shrinking_is_an_error():
    action, problem = volume.plan(VOL, G40, {"capacity": G40 + 1, "format": "qcow2"})
    assert action is None
    assert problem[0] == "error" and "would shrink it" in problem[1]


def test_growing_needs_the_opt_in():
    action, problem = volume.plan(VOL, G40, {"capacity": G40 // 2, "format": "qcow2"})
    assert action is None and problem[0] == "warning" and "allow_grow" in problem[1]
    assert volume.plan(dict(VOL, allow_grow=True), G40, {"capacity": G40 // 2, "format": "qcow2"}) == ("grow", None)


def test_other_format_is_never_recreated():
    action, problem = volume.plan(VOL, G40, {"capacity": G40, "format": "raw"})
    assert action is None
    assert problem == ("warning", "vm/win11.qcow2 is raw, the spec says qcow2; an existing volume is never recreated.")


def test_volume_format_from_libvirt_xml():
    assert volume.volume_format("<volume><target><format type='qcow2'/></target></volume>") == "qcow2"
    assert volume.volume_format("<volume><target/></volume>") == ""
