"""libvirt_backup's decisions without libvirt: when a backup is incremental and when it falls back
to a full one (with a warning where the guest changed under it), the backup and checkpoint XML it
hands libvirt, the external TPM's state directory read from the swtpm unit's argv, and retention."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.modules import libvirt_backup as mod

from ..module_utils.test_backup import UUID, chain3, make_backup

pytest.importorskip("libvirt")


class Checkpoint:
    def __init__(self, name, created):
        self.name, self.created = name, created

    def getName(self):
        return self.name

    def getXMLDesc(self, flags=0):
        return "<domaincheckpoint><name>%s</name><creationTime>%d</creationTime></domaincheckpoint>" % (
            self.name, self.created)


class Dom:
    def __init__(self, checkpoints=(), uuid=UUID):
        self.checkpoints, self.uuid = list(checkpoints), uuid

    def name(self):
        return "win 11 & ü's"

    def UUIDString(self):
        return self.uuid

    def listAllCheckpoints(self, flags=0):
        return [Checkpoint(n, i) for i, n in enumerate(self.checkpoints)]


DISKS = {"disks": [{"dev": "vda", "source": "/mnt/vm/vda.qcow2", "format": "qcow2"}]}


def params(**kw):
    return dict({"mode": "auto", "max_incrementals": 6, "warnings": []}, **kw)


def base(gdir, dom, parts=None, online=True, **kw):
    p = params(**kw)
    parent, reason = mod.base(dom, str(gdir), parts or DISKS, online, p)
    return (parent or {}).get("name"), reason, p["warnings"]


def test_an_incremental_builds_on_the_newest_backup_while_its_checkpoint_exists(gdir):
    chain3(gdir)
    assert base(gdir, Dom(["kvmlab-20261207T120000Z"])) == ("20261207T120000Z", None, [])
    # Checkpoints of killed runs after it do not matter: libvirt merges their bitmaps.
    assert base(gdir, Dom(["kvmlab-20261207T120000Z", "kvmlab-20261207T130000Z"]))[0] == "20261207T120000Z"


@pytest.mark.parametrize(("case", "reason", "warns"), [
    ("first", "the first backup", False),
    ("mode", "mode full", False),
    ("raw", "a disk is not qcow2", False),
    ("off", "the guest is not running", False),
    ("uuid", "redefined or renamed since backup 20261207T120000Z", True),
    ("disks", "its disks changed since backup 20261207T120000Z", True),
    ("checkpoint", "the checkpoint of backup 20261207T120000Z is gone", True),
    ("long", "its chain has 2 incremental backups", False),
    ("broken", "the last chain is broken", True),
])
def test_a_full_backup_is_taken_instead_and_says_why(gdir, case, reason, warns):
    if case != "first":
        chain3(gdir)
    dom = Dom(["kvmlab-20261207T120000Z"], uuid="00000000-0000-0000-0000-000000000001" if case == "uuid" else UUID)
    parts = DISKS
    if case == "raw":
        parts = {"disks": [dict(DISKS["disks"][0], format="raw")]}
    elif case == "disks":
        parts = {"disks": [*DISKS["disks"], {"dev": "vdb", "source": "/mnt/vm/vdb.qcow2", "format": "qcow2"}]}
    if case == "checkpoint":
        dom.checkpoints = ["kvmlab-20261207T110000Z"]
    if case == "broken":
        (gdir / "20261207T110000Z" / "manifest.json").unlink()
    parent, why, warnings = base(gdir, dom, parts, online=case != "off",
                                 mode="full" if case == "mode" else "auto", max_incrementals=1 if case == "long" else 6)
    assert parent is None
    assert reason in why
    assert bool(warnings) == warns, warnings
    if warns:
        assert "taking a full backup" in warnings[0]


def test_the_backup_and_checkpoint_xml_cover_every_disk_by_target(gdir):
    pl = {"parent": {"checkpoint": "kvmlab-20261207T120000Z"}, "checkpoint": "kvmlab-20261207T130000Z",
          "parts": {"disks": [{"dev": "vda"}, {"dev": "vdb"}], "skipped": ["sda", ""]}}
    bx, cx = mod.backup_xml(pl, "/b/it's & <x>.partial")
    backup, checkpoint = ET.fromstring(bx), ET.fromstring(cx)
    assert backup.findtext("incremental") == "kvmlab-20261207T120000Z"
    assert [(d.get("name"), d.get("backup")) for d in backup.findall("disks/disk")] == [
        ("vda", "yes"), ("vdb", "yes"), ("sda", "no")]
    assert backup.find("disks/disk/target").get("file") == "/b/it's & <x>.partial/vda.qcow2"
    assert checkpoint.findtext("name") == "kvmlab-20261207T130000Z"
    assert [(d.get("name"), d.get("checkpoint")) for d in checkpoint.findall("disks/disk")] == [
        ("vda", "bitmap"), ("vdb", "bitmap"), ("sda", "no")]
    pl.update(parent=None, checkpoint=None)
    bx, cx = mod.backup_xml(pl, "/b")
    assert cx is None and ET.fromstring(bx).find("incremental") is None


@pytest.mark.parametrize("state_dir", ["/mnt/vm/tpm", "/mnt/vm/a b/it's & ü", "/mnt/vm/mode=0600"])
def test_the_external_tpm_state_is_read_from_the_units_exact_argv(monkeypatch, state_dir):
    argv = ["/usr/bin/swtpm", "socket", "--tpm2", "--tpmstate", "dir=%s,mode=0600" % state_dir,
            "--ctrl", "type=unixio,fd=3"]

    class Out:
        stdout = json.dumps({"type": "a(sasbttttuii)", "data": [["/usr/bin/swtpm", argv, False, 1, 2, 0, 0, 9, 0, 0]]})

    seen = []
    monkeypatch.setattr(mod.subprocess, "run", lambda cmd, **kw: seen.append(cmd) or Out())
    assert mod.external_tpm_dir("win 11 & ü's") == state_dir
    assert seen[0][4] == "/org/freedesktop/systemd1/unit/kvmlab_2dswtpm_2dwin_2011_20_26_20_c3_bc_27s_2eservice"


def test_an_unknown_unit_gives_no_state_directory(monkeypatch):
    class Out:
        stdout = b""

    monkeypatch.setattr(mod.subprocess, "run", lambda cmd, **kw: Out())
    assert mod.external_tpm_dir("win11") is None


def test_retention_keeps_the_newest_chains_and_nothing_else(gdir):
    chain3(gdir)
    make_backup(gdir, "20261208T100000Z")
    make_backup(gdir, "20261208T110000Z", parent="20261208T100000Z", chain="20261208T100000Z")
    (gdir / "notes").mkdir()
    assert mod.prune(str(gdir), 2) == []
    removed = mod.prune(str(gdir), 1)
    assert sorted(p.rsplit("/", 1)[1] for p in removed) == ["20261207T100000Z", "20261207T110000Z", "20261207T120000Z"]
    assert sorted(p.name for p in gdir.iterdir()) == ["20261208T100000Z", "20261208T110000Z", "notes"]


class Guest(Dom):
    def __init__(self, active=True):
        super().__init__()
        self.active = active

    def isActive(self):
        return self.active


def guest_xml(backend: str) -> ET.Element:
    return ET.fromstring(
        "<domain><os><nvram>/mnt/vm/win11_VARS.fd</nvram></os><devices>"
        "<disk type='file' device='disk'><driver type='qcow2'/><source file='/mnt/vm/w.qcow2'/>"
        "<target dev='vda'/></disk>"
        "<disk type='file' device='cdrom'><target dev='sda'/></disk>"
        "<tpm model='tpm-crb'><backend type='%s'/></tpm></devices></domain>" % backend
    )


def test_an_emulator_tpm_is_libvirts_state_directory_by_uuid(monkeypatch):
    monkeypatch.setattr(mod.os.path, "isdir", lambda p: p == "/var/lib/libvirt/swtpm/" + UUID)
    p = mod.parts(Guest(), guest_xml("emulator"), None, [])
    assert p["tpm"] == {"type": "emulator", "source": "/var/lib/libvirt/swtpm/" + UUID}
    assert [d["dev"] for d in p["disks"]] == ["vda"] and p["skipped"] == ["sda"]
    assert p["nvram"] == "/mnt/vm/win11_VARS.fd"


def test_an_emulator_tpm_without_state_yet_is_left_out_only_while_the_guest_never_ran(monkeypatch):
    monkeypatch.setattr(mod.os.path, "isdir", lambda p: False)
    assert mod.parts(Guest(active=False), guest_xml("emulator"), None, [])["tpm"] is None
    with pytest.raises(mod.bk.BackupError, match=r"TPM state directory .* does not exist"):
        mod.parts(Guest(active=True), guest_xml("emulator"), None, [])


def test_tpm_state_dir_given_for_an_external_tpm_is_used_without_asking_systemd(monkeypatch):
    monkeypatch.setattr(mod, "external_tpm_dir", lambda name: pytest.fail("systemd was asked"))
    monkeypatch.setattr(mod.os.path, "isdir", lambda p: p == "/mnt/vm/tpm & ü")
    assert mod.parts(Guest(), guest_xml("external"), "/mnt/vm/tpm & ü", [])["tpm"] == {
        "type": "external", "source": "/mnt/vm/tpm & ü"}


def test_an_external_tpm_whose_state_is_unknown_is_refused_naming_the_fix(monkeypatch):
    monkeypatch.setattr(mod, "external_tpm_dir", lambda name: None)
    with pytest.raises(mod.bk.BackupError, match="give it as tpm_state_dir"):
        mod.parts(Guest(), guest_xml("external"), None, [])
