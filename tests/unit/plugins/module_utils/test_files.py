"""files.write_file: the mode it promises, from the first moment, with AnsibleModule's own atomic_move."""

from __future__ import annotations

import os
import stat

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.files import write_file


class Module:
    """AnsibleModule's atomic_move, on an object without module arguments."""

    atomic_move = AnsibleModule.atomic_move
    cleanup = AnsibleModule.cleanup

    def selinux_enabled(self):
        return False

    def fail_json(self, **kw):
        raise AssertionError(kw)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("wanted", [0o600, 0o644, 0o640])
def test_a_new_file_has_the_mode_asked_for_not_the_umasks(tmp_path, wanted):
    path = tmp_path / "sub" / "f"
    write_file(Module(), str(path), "secret", wanted)
    assert path.read_text() == "secret" and mode(path) == wanted


def test_a_new_file_without_a_mode_is_0644(tmp_path):
    path = tmp_path / "f"
    write_file(Module(), str(path), "x")
    assert mode(path) == 0o644


@pytest.mark.parametrize(("old", "wanted"), [(0o644, 0o600), (0o600, 0o644)])
def test_a_replaced_file_has_the_mode_asked_for(tmp_path, old, wanted):
    path = tmp_path / "f"
    path.write_text("old")
    os.chmod(path, old)
    write_file(Module(), str(path), "new", wanted)
    assert path.read_text() == "new" and mode(path) == wanted


def test_a_replaced_file_without_a_mode_keeps_its_own(tmp_path):
    path = tmp_path / "f"
    path.write_text("old")
    os.chmod(path, 0o640)
    write_file(Module(), str(path), "new")
    assert path.read_text() == "new" and mode(path) == 0o640


def test_no_temporary_file_is_left(tmp_path):
    write_file(Module(), str(tmp_path / "f"), "x", 0o600)
    write_file(Module(), str(tmp_path / "f"), "y", 0o600)
    assert os.listdir(tmp_path) == ["f"]
