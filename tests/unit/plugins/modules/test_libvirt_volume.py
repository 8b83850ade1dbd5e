"""libvirt_volume's directories: the missing ones are made, existing ones never touched, and a
path that is no directory stops the call before any change."""

from __future__ import annotations

import os

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.modules import libvirt_volume as mod


class Failed(Exception):
    pass


class Module:
    def __init__(self, check_mode=False, **params):
        self.params = {"volumes": [], "directories": [], "uri": "x"}
        self.params.update(params)
        self.check_mode = check_mode

    def fail_json(self, **kw):
        raise Failed(kw["msg"])


def test_missing_directories_are_made_and_existing_ones_keep_their_mode(tmp_path):
    kept = tmp_path / "kept"
    kept.mkdir(mode=0o700)
    new = tmp_path / "Tim's \"R&D\" share" / "deep"
    result = mod.core(Module(directories=[str(kept), str(new)]))
    assert result["changed"] and result["directories"] == [str(new)]
    assert new.is_dir() and (kept.stat().st_mode & 0o777) == 0o700
    assert mod.core(Module(directories=[str(kept), str(new)]))["changed"] is False


def test_check_mode_predicts_and_makes_nothing(tmp_path):
    result = mod.core(Module(check_mode=True, directories=[str(tmp_path / "a")]))
    assert result["changed"] and result["directories"] == [str(tmp_path / "a")]
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(("name", "message"), [
    ("file", "exists but is not a directory; move it away."),
    ("relative", "is not an absolute path."),
])
def test_a_path_that_cannot_be_a_directory_stops_before_any_change(tmp_path, name, message):
    (tmp_path / "file").write_text("data")
    path = str(tmp_path / "file") if name == "file" else "share"
    with pytest.raises(Failed, match=message):
        mod.core(Module(directories=[str(tmp_path / "first"), path]))
    assert not os.path.exists(tmp_path / "first")
