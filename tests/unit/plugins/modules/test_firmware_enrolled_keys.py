"""firmware_enrolled_keys on fixture firmware trees with a stand-in virt-fw-vars: nothing done where
the distribution offers enrolled keys; otherwise built once (template before descriptor), rebuilt
only when the distribution's template changes, nothing left behind when the tool fails, nothing
written in check mode, and only the module's own stale descriptors removed."""

from __future__ import annotations

import json
import os

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import firmware
from ansible_collections.kvmlab.hypervisor.plugins.modules import firmware_enrolled_keys as mod

OURS = "45-kvmlab-edk2-ovmf-x86_64-secure-4m-enrolled.json"
TARGETS = [{"architecture": "x86_64", "machines": ["pc-q35-*"]}]


class Ended(Exception):
    def __init__(self, failed: bool, result: dict):
        super().__init__(result.get("msg", ""))
        self.failed, self.result = failed, result


@pytest.fixture(name="tree")
def fixture_tree(tmp_path, monkeypatch):
    """A distribution's firmware (Arch-like: Secure Boot without enrolled keys, and plain UEFI);
    its paths hold a space, a quote and a non-ASCII letter, as any path may."""
    share, etc, lib = tmp_path / "share fw", tmp_path / "etc fw", tmp_path / "var lib 'kvmlab' é"
    code = tmp_path / "edk2" / "OVMF_CODE.secboot.4m.fd"
    vars_ = tmp_path / "edk2" / "OVMF_VARS.4m.fd"
    code.parent.mkdir()
    code.write_bytes(b"code")
    vars_.write_bytes(b"blank vars")
    share.mkdir()
    (share / "50-edk2-ovmf-x86_64-secure-4m.json").write_text(json.dumps({
        "description": "UEFI with Secure Boot", "interface-types": ["uefi"],
        "mapping": {"device": "flash", "executable": {"filename": str(code), "format": "raw"},
                    "nvram-template": {"filename": str(vars_), "format": "raw"}},
        "targets": TARGETS, "features": ["requires-smm", "secure-boot"]}))
    (share / "60-edk2-ovmf-x86_64-4m.json").write_text(json.dumps({
        "interface-types": ["uefi"],
        "mapping": {"device": "flash", "executable": {"filename": str(code), "format": "raw"},
                    "nvram-template": {"filename": str(vars_), "format": "raw"}},
        "targets": TARGETS, "features": []}))
    monkeypatch.setattr(firmware, "FIRMWARE_DIRS", (str(etc), str(share)))
    return {"share": share, "etc": etc, "lib": lib, "vars": vars_}


def run(monkeypatch, tree, check_mode=False, tool="ok"):
    """main(); the stand-in virt-fw-vars copies its input and appends the enrolment marker, or fails.
    Returns (failed, result, the tool's calls)."""
    calls = []

    class FakeModule:
        def __init__(self, **_spec):
            self.params = {"directory": str(tree["lib"]), "descriptor_directory": str(tree["etc"]),
                           "architecture": "x86_64"}
            self.check_mode = check_mode

        def run_command(self, argv):
            calls.append(argv)
            source, out = argv[argv.index("--input") + 1], argv[argv.index("--output") + 1]
            # The descriptor must not exist before its template is in place.
            assert tool == "rebuild" or not (tree["etc"] / OURS).exists()
            if tool == "fails":
                with open(out, "wb") as handle:
                    handle.write(b"partial")
                return 1, "", "ERROR: bad varstore"
            with open(source, "rb") as src, open(out, "wb") as dst:
                dst.write(src.read() + b" +PK +KEK +db +SecureBoot")
            return 0, "", ""

        def atomic_move(self, src, dest, keep_dest_attrs=True):
            os.replace(src, dest)

        def fail_json(self, **kw):
            raise Ended(True, kw)

        def exit_json(self, **kw):
            raise Ended(False, kw)

    monkeypatch.setattr(mod, "AnsibleModule", FakeModule)
    monkeypatch.setattr(mod.shutil, "which", lambda name: None if tool == "missing" else "/usr/bin/" + name)
    with pytest.raises(Ended) as ended:
        mod.main()
    return ended.value.failed, ended.value.result, calls


def descriptor(tree) -> dict:
    return json.loads((tree["etc"] / "45-kvmlab-edk2-ovmf-x86_64-secure-4m-enrolled.json").read_text())


def test_nothing_to_do_where_the_distribution_offers_enrolled_keys(monkeypatch, tree):
    enrolled = json.loads((tree["share"] / "50-edk2-ovmf-x86_64-secure-4m.json").read_text())
    enrolled["features"].append("enrolled-keys")
    (tree["share"] / "40-edk2-x86_64-secure-enrolled.json").write_text(json.dumps(enrolled))
    failed, result, calls = run(monkeypatch, tree)
    assert not failed and not result["changed"] and result["state"] == "distribution"
    assert calls == [] and not tree["etc"].exists() and not tree["lib"].exists()


def test_built_once_then_current(monkeypatch, tree):
    failed, result, calls = run(monkeypatch, tree)
    assert not failed and result["changed"] and result["state"] == "built"
    template = tree["lib"] / "OVMF_VARS.4m.ms.fd"
    assert calls == [["/usr/bin/virt-fw-vars", "--input", str(tree["vars"]), "--output", calls[0][4],
                      "--enroll-redhat", "--secure-boot"]]
    assert template.read_bytes() == b"blank vars +PK +KEK +db +SecureBoot"
    assert oct(template.stat().st_mode & 0o777) == "0o644"
    desc = descriptor(tree)
    assert desc["features"] == ["requires-smm", "secure-boot", "enrolled-keys"]
    assert desc["mapping"]["nvram-template"]["filename"] == str(template)
    assert desc["mapping"]["executable"]["filename"].endswith("OVMF_CODE.secboot.4m.fd")
    assert result["diff"][-1]["before"] == "" and json.loads(result["diff"][-1]["after"]) == desc
    assert sorted(p.name for p in tree["lib"].iterdir()) == ["OVMF_VARS.4m.ms.fd"]
    # libvirt (and the domain module's firmware check) now find enrolled keys.
    descs = firmware.descriptors()
    assert firmware.matching(descs, "x86_64", "pc-q35-9.2", secure=True, enrolled=True) == [
        str(tree["etc"] / "45-kvmlab-edk2-ovmf-x86_64-secure-4m-enrolled.json")]
    assert firmware.plan(descs, "x86_64", str(tree["lib"]), str(tree["etc"]))["state"] == "current"

    mtime = template.stat().st_mtime_ns
    failed, result, calls = run(monkeypatch, tree)
    assert not failed and not result["changed"] and result["state"] == "current" and calls == []
    assert template.stat().st_mtime_ns == mtime


def test_rebuilt_when_the_distributions_template_changes_or_ours_is_gone(monkeypatch, tree):
    run(monkeypatch, tree)
    tree["vars"].write_bytes(b"new blank vars")
    failed, result, calls = run(monkeypatch, tree, tool="rebuild")
    assert not failed and result["changed"] and len(calls) == 1
    assert (tree["lib"] / "OVMF_VARS.4m.ms.fd").read_bytes().startswith(b"new blank vars")
    (tree["lib"] / "OVMF_VARS.4m.ms.fd").unlink()
    failed, result, calls = run(monkeypatch, tree, tool="rebuild")
    assert not failed and result["changed"] and (tree["lib"] / "OVMF_VARS.4m.ms.fd").is_file()


def test_a_failing_tool_leaves_nothing_behind(monkeypatch, tree):
    failed, result, _calls = run(monkeypatch, tree, tool="fails")
    assert failed and "could not enrol the keys" in result["msg"] and "bad varstore" in result["msg"]
    assert list(tree["lib"].iterdir()) == [] and not tree["etc"].exists()


def test_a_missing_tool_names_the_packages(monkeypatch, tree):
    failed, result, _calls = run(monkeypatch, tree, tool="missing")
    assert failed and "Arch: virt-firmware" in result["msg"] and "python3-virt-firmware" in result["msg"]
    assert not tree["etc"].exists()


def test_check_mode_writes_nothing(monkeypatch, tree):
    failed, result, calls = run(monkeypatch, tree, check_mode=True)
    assert not failed and result["changed"] and calls == []
    assert not tree["etc"].exists() and not tree["lib"].exists()


def test_check_mode_before_any_firmware_is_installed_says_it_cannot_know_yet(monkeypatch, tree):
    for path in tree["share"].iterdir():
        path.unlink()
    failed, result, _calls = run(monkeypatch, tree, check_mode=True)
    assert not failed and result["changed"] and "no UEFI firmware is installed yet" in result["msg"]
    failed, result, _calls = run(monkeypatch, tree)
    assert failed and "install the distribution's OVMF package" in result["msg"]


def test_only_the_modules_own_stale_descriptors_are_removed(monkeypatch, tree):
    tree["etc"].mkdir()
    (tree["etc"] / "45-kvmlab-old-enrolled.json").write_text(json.dumps({"interface-types": ["uefi"]}))
    (tree["etc"] / "30-admin-own.json").write_text(json.dumps({"interface-types": ["uefi"]}))
    failed, result, _calls = run(monkeypatch, tree)
    assert not failed and result["removed"] == [str(tree["etc"] / "45-kvmlab-old-enrolled.json")]
    assert sorted(p.name for p in tree["etc"].iterdir()) == [
        "30-admin-own.json", "45-kvmlab-edk2-ovmf-x86_64-secure-4m-enrolled.json"]


def test_libvirt_reads_every_file_so_a_renamed_descriptor_still_counts(tree):
    """libvirt reads every non-hidden file of the directories, whatever its suffix: a descriptor
    renamed to *.json.disabled is still offered (which is why the debian13 scenario diverts
    Debian's enrolled descriptor to another directory)."""
    os.rename(tree["share"] / "60-edk2-ovmf-x86_64-4m.json", tree["share"] / "60-edk2-ovmf-x86_64-4m.json.disabled")
    (tree["share"] / ".hidden.json").write_text("{}")
    names = [os.path.basename(d["_file"]) for d in firmware.descriptors()]
    assert names == ["50-edk2-ovmf-x86_64-secure-4m.json", "60-edk2-ovmf-x86_64-4m.json.disabled"]
