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
