"""systemd_units against a fake systemctl: files written only when they differ, one reload,
units enabled and started only when they are not, nothing restarted, nothing done in check mode."""

from __future__ import annotations

import os

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.modules import systemd_units as mod

UNITS = [{"name": "kvmlab-swtpm-w.socket", "content": "[Socket]\nListenStream=/mnt/vm/w.sock\n"},
         {"name": "kvmlab-swtpm-w.service", "content": "[Service]\nExecStart=/usr/bin/swtpm socket\n"}]


class Ended(Exception):
    def __init__(self, failed: bool, result: dict):
        super().__init__(result.get("msg", ""))
        self.failed, self.result = failed, result


def run(monkeypatch, directory, states: dict, check_mode=False, units=None):
    """main() with a fake systemctl whose units are in `states` ({unit: (UnitFileState, ActiveState)});
    returns (failed, result, the systemctl calls)."""
    calls = []

    class FakeModule:
        def __init__(self, **_spec):
            self.params = {"units": units or UNITS, "start": ["kvmlab-swtpm-w.socket"], "directory": str(directory)}
            self.check_mode = check_mode

        def run_command(self, argv):
            calls.append(argv[1:])
            if argv[1] == "show":
                names = argv[argv.index("--") + 1:]
                out = "\n\n".join("Id=%s\nUnitFileState=%s\nActiveState=%s" % (n, *states.get(n, ("", "inactive")))
                                  for n in names)
                return 0, out + "\n", ""
            return 0, "", ""

        def atomic_move(self, src, dest, keep_dest_attrs=True):
            os.replace(src, dest)

        def fail_json(self, **kw):
            raise Ended(True, kw)

        def exit_json(self, **kw):
            raise Ended(False, kw)

    monkeypatch.setattr(mod, "AnsibleModule", FakeModule)
    with pytest.raises(Ended) as ended:
        mod.main()
    return ended.value.failed, ended.value.result, [c for c in calls if c[0] != "show"]


def test_new_units_are_written_reloaded_once_enabled_and_started(monkeypatch, tmp_path):
    failed, result, calls = run(monkeypatch, tmp_path, {})
    assert not failed and result["changed"]
    assert calls == [["daemon-reload"], ["enable", "--", "kvmlab-swtpm-w.socket"],
                     ["start", "--", "kvmlab-swtpm-w.socket"]]
    assert (tmp_path / "kvmlab-swtpm-w.socket").read_text() == UNITS[0]["content"]
    assert (tmp_path / "kvmlab-swtpm-w.service").stat().st_mode & 0o777 == 0o644
    assert [d["after_header"] for d in result["diff"]] == [str(tmp_path / u["name"]) for u in UNITS]


def test_a_converged_host_changes_nothing_and_a_changed_file_restarts_nothing(monkeypatch, tmp_path):
    run(monkeypatch, tmp_path, {})
    running = {"kvmlab-swtpm-w.socket": ("enabled", "active")}
    failed, result, calls = run(monkeypatch, tmp_path, running)
    assert not failed and not result["changed"] and calls == []
    edited = [UNITS[0], dict(UNITS[1], content=UNITS[1]["content"] + "Restart=on-failure\n")]
    failed, result, calls = run(monkeypatch, tmp_path, running, units=edited)
    assert result["changed"] and result["written"] == [str(tmp_path / "kvmlab-swtpm-w.service")]
    assert calls == [["daemon-reload"]]  # never a restart under a running guest


def test_check_mode_predicts_and_touches_nothing(monkeypatch, tmp_path):
    failed, result, calls = run(monkeypatch, tmp_path, {}, check_mode=True)
    assert not failed and result["changed"] and calls == []
    assert result["enabled"] == result["started"] == ["kvmlab-swtpm-w.socket"]
    assert list(tmp_path.iterdir()) == []


def test_a_unit_name_with_a_slash_is_refused_before_any_change(monkeypatch, tmp_path):
    bad = [*UNITS, {"name": "../evil.service", "content": "x"}]
    failed, result, calls = run(monkeypatch, tmp_path, {}, units=bad)
    assert failed and result["msg"] == "units: '../evil.service' is not a unit file name."
    assert list(tmp_path.iterdir()) == [] and calls == []
