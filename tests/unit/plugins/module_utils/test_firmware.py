"""QEMU firmware descriptors as libvirt reads them: a malformed one is skipped and named, never a
crash, and an empty file masks the descriptor of the same name."""

from __future__ import annotations

import json

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import firmware

GOOD = {"interface-types": ["uefi"], "features": ["secure-boot", "enrolled-keys"],
        "targets": [{"architecture": "x86_64", "machines": ["pc-q35-*"]}],
        "mapping": {"device": "flash", "executable": {"filename": "/c.fd"}, "nvram-template": {"filename": "/v.fd"}}}


@pytest.mark.parametrize(("text", "why"), [
    ("{not json", "not JSON"),
    ('["uefi"]', "not a JSON object"),
    (json.dumps(dict(GOOD, features="secure-boot")), "features is not a list"),
    (json.dumps(dict(GOOD, targets=["x86_64"])), "targets holds an entry"),
    (json.dumps(dict(GOOD, targets=[{"architecture": "x86_64", "machines": "pc-q35-*"}])), "targets holds"),
    (json.dumps(dict(GOOD, mapping=[])), "mapping is not a mapping"),
    (json.dumps(dict(GOOD, mapping={"nvram-template": "/v.fd"})), "mapping.nvram-template"),
    (json.dumps(dict(GOOD, **{"interface-types": [1]})), "interface-types holds a value"),
])
def test_a_malformed_descriptor_is_skipped_and_named(tmp_path, text, why):
    (tmp_path / "10-bad.json").write_text(text)
    (tmp_path / "fw").mkdir()
    (tmp_path / "fw" / "c.fd").write_bytes(b"code")
    (tmp_path / "fw" / "v.fd").write_bytes(b"vars")
    good = dict(GOOD, mapping={"device": "flash", "executable": {"filename": str(tmp_path / "fw" / "c.fd")},
                               "nvram-template": {"filename": str(tmp_path / "fw" / "v.fd")}})
    (tmp_path / "20-good.json").write_text(json.dumps(good))
    skipped: list[str] = []
    found = firmware.descriptors([str(tmp_path)], skipped)
    assert [d["_file"] for d in found] == [str(tmp_path / "20-good.json")]
    assert len(skipped) == 1 and skipped[0].startswith(str(tmp_path / "10-bad.json") + ": ") and why in skipped[0]
    # And every use of the descriptors goes on with the good one.
    assert firmware.matching(found, "x86_64", "pc-q35-7.2", True, True) == [str(tmp_path / "20-good.json")]
    firmware.plan(found)


def test_an_empty_file_masks_without_a_warning(tmp_path):
    first, second = tmp_path / "etc", tmp_path / "usr"
    first.mkdir()
    second.mkdir()
    (first / "50-x.json").write_text("")
    (second / "50-x.json").write_text(json.dumps(GOOD))
    skipped: list[str] = []
    assert firmware.descriptors([str(first), str(second)], skipped) == [] and skipped == []


def test_a_descriptor_whose_firmware_files_are_missing_offers_nothing(tmp_path):
    """Arch's edk2-ovmf ships 80-edk2-ovmf-ia32-on-x86_64-secure-4m.json, for q35 and Secure
    Boot, naming /usr/share/edk2/ia32/ files not every build installs: neither a guest's firmware
    check nor the enrolled-keys plan may take it."""
    (tmp_path / "c.fd").write_bytes(b"code")
    (tmp_path / "v.fd").write_bytes(b"vars")
    present = dict(GOOD, features=["secure-boot"], _file=str(tmp_path / "50-x.json"),
                   mapping={"device": "flash", "executable": {"filename": str(tmp_path / "c.fd")},
                            "nvram-template": {"filename": str(tmp_path / "v.fd")}})
    absent = dict(present, _file=str(tmp_path / "40-ia32.json"),
                  mapping={"device": "flash", "executable": {"filename": str(tmp_path / "ia32" / "c.fd")},
                           "nvram-template": {"filename": str(tmp_path / "ia32" / "v.fd")}})
    assert firmware.matching([absent, present], "x86_64", "pc-q35-9.2", True, False) == [present["_file"]]
    plan = firmware.plan([absent, present], directory=str(tmp_path / "out"), descriptor_dir=str(tmp_path / "etc"))
    assert plan["source"] == present["_file"]
    assert firmware.plan([absent], directory=str(tmp_path / "out"), descriptor_dir=str(tmp_path / "etc"))[
        "state"] == "no-template"
