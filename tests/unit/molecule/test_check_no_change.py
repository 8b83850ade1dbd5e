"""The Molecule check guard must fail a --check run that predicts a change, and only that."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
from ansible import context
from ansible.module_utils.common.collections import ImmutableDict

PLUGIN = Path(__file__).parents[3] / "molecule" / "shared" / "callback_plugins" / "check_no_change.py"


@pytest.fixture
def guard():
    spec = importlib.util.spec_from_file_location("check_no_change", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CallbackModule()


def result(changed: bool, task: str = "Install", **extra):
    host = SimpleNamespace(get_name=lambda: "hv1")
    task_obj = SimpleNamespace(get_name=lambda: task)
    return SimpleNamespace(_result={"changed": changed, **extra}, _host=host, _task=task_obj)


@pytest.fixture
def cliargs():
    saved = context.CLIARGS
    yield lambda **kw: setattr(context, "CLIARGS", ImmutableDict(kw))
    context.CLIARGS = saved


def test_check_run_with_predicted_change_exits_3(guard, cliargs):
    cliargs(check=True)
    guard.v2_runner_on_ok(result(False))
    guard.v2_runner_item_on_ok(result(True, "Set keys", _ansible_item_label="swtpm_user"))
    with pytest.raises(SystemExit) as stop:
        guard.v2_playbook_on_stats(None)
    assert stop.value.code == 3
    assert guard.predicted == ["hv1: Set keys (swtpm_user)"]


def test_loop_aggregate_is_not_counted_twice(guard):
    guard.v2_runner_on_ok(result(True, "Set keys", results=[{"changed": True}]))
    assert guard.predicted == []


def test_check_run_without_change_passes(guard, cliargs):
    cliargs(check=True)
    guard.v2_runner_on_ok(result(False))
    guard.v2_playbook_on_stats(None)


def test_real_run_is_not_judged(guard, cliargs):
    cliargs(check=False)
    guard.v2_runner_on_ok(result(True))
    guard.v2_playbook_on_stats(None)


def test_guard_can_be_switched_off(guard, cliargs, monkeypatch):
    monkeypatch.setenv("KVMLAB_CHECK_GUARD", "0")
    cliargs(check=True)
    guard.v2_runner_on_ok(result(True))
    guard.v2_playbook_on_stats(None)
