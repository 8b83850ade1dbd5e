"""vm_storage's directories: made when missing, owner, group and mode repaired only where given,
every entry checked before any change, check mode and diff truthful. (Its pools and volumes are
libvirt_pool's and libvirt_volume's code, tested there and by the Molecule drift tests.)"""

from __future__ import annotations

import os
import stat

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import libvirt_common
from ansible_collections.kvmlab.hypervisor.plugins.modules import vm_storage as mod


class Failed(Exception):
    pass


class Module:
    def __init__(self, check_mode=False, **params):
        self.params = {"subvolume": None, "directories": [], "pools": [], "volumes": [], "uri": "x"}
        self.params.update(params)
        self.check_mode = check_mode

    def fail_json(self, **kw):
        raise Failed(kw["msg"])

    def run_command(self, argv):
        raise AssertionError("no command expected: %s" % argv)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


ME = str(os.getuid())


def test_a_missing_directory_is_made_with_its_parents_and_mode(tmp_path):
    target = tmp_path / "a b & ü" / "tpm"
    result = mod.core(Module(directories=[{"path": str(target), "owner": ME, "mode": "0750"}]))
    assert result["changed"] and result["directories"] == [str(target)]
    assert mode(target) == 0o750 and mode(target.parent) == 0o755
    assert result["diff"]["before"] == {"directory %s" % target: {"exists": False}}
    assert result["diff"]["after"]["directory %s" % target]["mode"] == "0750"
    again = mod.core(Module(directories=[{"path": str(target), "owner": ME, "mode": "0750"}]))
    assert again["changed"] is False and again["diff"] == {"before": {}, "after": {}}


@pytest.mark.parametrize("given", ["0750", "750", 0o750])
def test_a_drifted_mode_is_repaired_in_any_of_the_spellings(tmp_path, given):
    (tmp_path / "iso").mkdir(mode=0o777)
    os.chmod(tmp_path / "iso", 0o777)
    result = mod.core(Module(directories=[{"path": str(tmp_path / "iso"), "mode": given}]))
    assert result["changed"] and mode(tmp_path / "iso") == 0o750
    key = "directory %s" % (tmp_path / "iso")
    assert (result["diff"]["before"][key]["mode"], result["diff"]["after"][key]["mode"]) == ("0777", "0750")


def test_fields_left_out_are_never_changed_on_an_existing_directory(tmp_path):
    (tmp_path / "share").mkdir()
    os.chmod(tmp_path / "share", 0o711)
    result = mod.core(Module(directories=[{"path": str(tmp_path / "share")}]))
    assert result["changed"] is False and mode(tmp_path / "share") == 0o711


def test_check_mode_reports_and_changes_nothing(tmp_path):
    (tmp_path / "iso").mkdir()
    os.chmod(tmp_path / "iso", 0o700)
    specs = [{"path": str(tmp_path / "new")}, {"path": str(tmp_path / "iso"), "mode": "0755"}]
    result = mod.core(Module(check_mode=True, directories=specs))
    assert result["changed"] and result["directories"] == [str(tmp_path / "new"), str(tmp_path / "iso")]
    assert not (tmp_path / "new").exists() and mode(tmp_path / "iso") == 0o700


@pytest.mark.parametrize(("spec", "message"), [
    ({"path": "share"}, r"directories\[share\]: the path is relative; give an absolute path."),
    ({"path": "FILE"}, r"the path exists but is not a directory; move it away."),
    ({"path": "/x", "owner": "no-such-user-kvmlab"}, r"directories\[/x\]\.owner: there is no user 'no-such-user-kv"),
    ({"path": "/x", "group": "no-such-group-kvmlab"}, r"\.group: there is no group 'no-such-group-kvmlab'"),
    ({"path": "/x", "mode": "u+rwx"}, r"\.mode: 'u\+rwx' is not an octal mode; quote it as four digits"),
    ({"path": "/x", "mode": "0750\n"}, r"\.mode: '0750\\n' is not an octal mode"),
    ({"path": "/x", "mode": 0o17777}, r"\.mode: 8191 is above 07777"),
    ({"path": "/x", "mode": True}, r"\.mode: True is not an octal mode"),
])
def test_a_spec_no_directory_can_meet_stops_before_any_change(tmp_path, spec, message):
    (tmp_path / "file").write_text("data")
    spec = dict(spec, path=str(tmp_path / "file") if spec["path"] == "FILE" else spec["path"])
    first = tmp_path / "first"
    with pytest.raises(Failed, match=message):
        mod.core(Module(directories=[{"path": str(first), "mode": "0700"}, spec]))
    assert not first.exists()


def test_one_directory_listed_twice_must_agree(tmp_path):
    path = str(tmp_path / "d")
    assert mod.core(Module(directories=[{"path": path + "/", "mode": "0755"}, {"path": path}]))["changed"]
    with pytest.raises(Failed, match=r"listed twice with different owner, group or mode; keep one entry"):
        mod.core(Module(directories=[{"path": path, "mode": "0755"}, {"path": path + "/.", "mode": "0700"}]))


def test_check_mode_plans_a_user_a_package_would_make(tmp_path):
    """A fresh host in check mode: swtpm (which makes tss) is only predicted, so an unknown owner is
    planned by its name; a real run still refuses it before any change."""
    spec = [{"path": str(tmp_path / "tpm"), "owner": "no-such-user-kvmlab", "group": "no-such-group-kvmlab"}]
    result = mod.core(Module(check_mode=True, directories=spec))
    assert result["changed"] and not (tmp_path / "tpm").exists()
    after = result["diff"]["after"]["directory %s" % (tmp_path / "tpm")]
    assert (after["owner"], after["group"]) == ("no-such-user-kvmlab", "no-such-group-kvmlab")
    with pytest.raises(Failed, match="there is no user 'no-such-user-kvmlab'"):
        mod.core(Module(directories=spec))


def test_a_subvolume_refused_leaves_the_directories_unmade(tmp_path, monkeypatch):
    monkeypatch.setattr(mod.btrfs, "find_filesystem",
                        lambda run, device: {"fstype": "ext4", "uuid": "u", "source": device})
    subvolume = {"name": "@vm", "device": "/dev/vdb", "mount_point": str(tmp_path / "vm"), "mount_options": [],
                 "nodatacow": True}
    with pytest.raises(Failed, match=r"^/dev/vdb is ext4, not btrfs"):
        mod.core(Module(subvolume=subvolume, directories=[{"path": str(tmp_path / "vm" / "iso")}]))
    assert not (tmp_path / "vm").exists()
    subvolume["mount_options"] = ["noatime,ro"]  # checked before the filesystem is even looked at
    with pytest.raises(Failed, match=r"^subvolume\.mount_options: 'noatime,ro'"):
        mod.core(Module(subvolume=subvolume))


class Exited(Exception):
    pass


def test_a_fresh_hosts_check_run_still_reports_the_directories_before_libvirt(tmp_path, monkeypatch):
    """libvirt only predicted (check mode, no binding yet): the call ends with the directories'
    diff in its result, not with a bare "would converge"."""
    monkeypatch.setattr(libvirt_common, "libvirt", None)
    module = Module(check_mode=True, directories=[{"path": str(tmp_path / "tpm"), "mode": "0750"}],
                    pools=[{"name": "vm", "path": str(tmp_path), "state": "present", "active": True,
                            "autostart": True}])

    def exit_json(**kw):
        raise Exited(kw)

    module.exit_json = exit_json
    with pytest.raises(Exited) as ended:
        mod.core(module)
    result = ended.value.args[0]
    assert result["changed"] is True and "not installed yet" in result["msg"]
    assert result["directories"] == [str(tmp_path / "tpm")]
    assert result["diff"]["before"] == {"directory %s" % (tmp_path / "tpm"): {"exists": False}}
    assert not (tmp_path / "tpm").exists()
