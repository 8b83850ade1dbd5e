"""libvirt_restore's swap: a rename that fails halfway leaves the guest with all of its own files."""

from __future__ import annotations

import os

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import backup as bk
from ansible_collections.kvmlab.hypervisor.plugins.modules import libvirt_restore as mod


def layout(tmp_path):
    """A guest's disk and NVRAM file, with their restored parts written beside them."""
    files = {}
    for name in ("win 11 & ü's.qcow2", "win11_VARS.fd"):
        path = tmp_path / name
        path.write_text("own " + name)
        (tmp_path / (name + mod.PART)).write_text("restored " + name)
        files[str(path)] = str(path) + mod.PART
    aside = {path: path + ".pre-restore-20261207T120000Z" for path in files}
    renames = [(part, path) for path, part in files.items()]
    return files, aside, renames


def test_the_parts_replace_the_files_which_are_moved_aside(tmp_path):
    files, aside, renames = layout(tmp_path)
    mod.put_in_place(aside, renames, "guest win11, backup X")
    for path, moved in aside.items():
        assert open(path).read().startswith("restored ") and open(moved).read().startswith("own ")
    assert not any(os.path.exists(part) for part in files.values())


def test_a_rename_failing_halfway_puts_the_guests_own_files_back(tmp_path, monkeypatch):
    files, aside, renames = layout(tmp_path)
    real, calls = os.rename, []

    def rename(src, dst):
        calls.append(dst)
        if len(calls) == 4:  # both moved aside, one part in place: the second part fails
            raise OSError(13, "Permission denied", dst)
        real(src, dst)

    monkeypatch.setattr(mod.os, "rename", rename)
    with pytest.raises(bk.BackupError, match="the guest's own files were put back and nothing was restored"):
        mod.put_in_place(aside, renames, "guest win11, backup X")
    for path in files:
        assert open(path).read().startswith("own ")
    assert not any(os.path.exists(moved) for moved in aside.values())


class Checkpoint:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def delete(self, flags):
        self.log.append(("checkpoint delete", self.name, flags))


class Dom:
    def __init__(self, log, uuid):
        self.log, self.uuid = log, uuid

    def UUIDString(self):
        return self.uuid

    def listAllCheckpoints(self, flags=0):
        return [Checkpoint(self.log, "kvmlab-20261207T120000Z")]

    def undefineFlags(self, flags):
        self.log.append(("undefine", self.uuid, flags))

    def create(self):
        self.log.append(("start", self.uuid))


class Conn:
    def __init__(self, log, uuid):
        self.log, self.uuid = log, uuid

    def defineXML(self, xml):
        self.log.append(("define", xml))
        return Dom(self.log, self.uuid)


BACKED_UP = "00000000-0000-4000-8000-000000000001"


@pytest.mark.parametrize("start", [True, False])
def test_a_same_name_guest_with_another_uuid_is_undefined_keeping_its_nvram_and_tpm(tmp_path, start):
    libvirt = pytest.importorskip("libvirt")
    (tmp_path / "domain.xml").write_text("<domain>backed up</domain>")
    log = []
    other = Dom(log, "00000000-0000-4000-8000-000000000002")
    mod.redefine(Conn(log, BACKED_UP), other, {"uuid": BACKED_UP, "folder": str(tmp_path)}, start)
    keep = (libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_KEEP_TPM
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
    assert log == [
        ("checkpoint delete", "kvmlab-20261207T120000Z", libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY),
        ("undefine", other.uuid, keep),
        ("define", "<domain>backed up</domain>"),
    ] + ([("start", BACKED_UP)] if start else [])


def test_the_same_guest_is_redefined_in_place(tmp_path):
    pytest.importorskip("libvirt")
    (tmp_path / "domain.xml").write_text("<domain>backed up</domain>")
    log = []
    mod.redefine(Conn(log, BACKED_UP), Dom(log, BACKED_UP), {"uuid": BACKED_UP, "folder": str(tmp_path)}, False)
    assert [entry[0] for entry in log] == ["checkpoint delete", "define"]
