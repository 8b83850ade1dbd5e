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
    (tmp_path / "20-good.json").write_text(json.dumps(GOOD))
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
