# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Count the remote task executions of a run (what costs a round trip to the host).

Each result of a module that runs on the host counts once, each loop item once; skipped tasks
and actions that run on the controller only (set_fact, include_role, fail, assert, ...) do not.
With KVMLAB_TASK_COUNT=FILE the count goes to FILE as JSON: {"remote": N, "by_task": {...},
"package_seconds": S, "changed": [...], "failed": [...], "check_mode": bool}, S being the time
spent in package tasks (apt, package, pacman), "changed" the names of the tasks that reported a
change (once each, in order). Used by `make bench` (tools/bench), the verify test that converges
generated guests. With KVMLAB_TASK_LOG=FILE the same record, plus the playbook's file name, is
appended to FILE as one JSON line per run: the first-run test (molecule/debian13) compares a
fresh host's check run with the real run that follows.
"""

from __future__ import annotations

import collections
import json
import os
import time

from ansible import context
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_count
type: aggregate
short_description: Count the remote task executions of a run
description:
  - Counts each result of a task that ran a module on the host (each loop item once), and
    writes the total and the count per task as JSON to the file named by KVMLAB_TASK_COUNT.
requirements:
  - enabled in callbacks_enabled
"""

# Actions that run on the controller only.
LOCAL = {"set_fact", "include_role", "include_tasks", "import_role", "import_tasks", "include_vars", "fail",
         "assert", "debug", "meta", "add_host", "group_by", "set_stats", "validate_argument_spec", "pause",
         "import_playbook", "include"}
PACKAGE = {"apt", "package", "pacman", "dnf"}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_count"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.by_task: collections.Counter = collections.Counter()
        self.started = 0.0
        self.package_seconds = 0.0
        self.changed: list[str] = []
        self.failed: list[str] = []
        self.playbook = ""

    def v2_playbook_on_start(self, playbook) -> None:
        self.playbook = os.path.basename(playbook._file_name)

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self.started = time.monotonic()

    def _timed(self, result) -> None:
        if result._task.action.rsplit(".", 1)[-1] in PACKAGE:
            self.package_seconds += time.monotonic() - self.started

    def _count(self, result) -> None:
        task = result._task
        if task.action.rsplit(".", 1)[-1] in LOCAL or task.delegate_to in ("localhost", "127.0.0.1"):
            return
        self.by_task[task.get_name()] += 1

    @staticmethod
    def _note(names: list, result) -> None:
        name = result._task.get_name()
        if name not in names:
            names.append(name)

    def v2_runner_on_ok(self, result) -> None:
        self._timed(result)
        if result._result.get("changed"):
            self._note(self.changed, result)
        if not result._result.get("results"):  # a loop's items are counted one by one below
            self._count(result)

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._timed(result)
        if not ignore_errors:
            self._note(self.failed, result)
        if not result._result.get("results"):
            self._count(result)

    v2_runner_item_on_ok = _count
    v2_runner_item_on_failed = _count

    def v2_playbook_on_stats(self, stats) -> None:
        record = {"remote": sum(self.by_task.values()), "by_task": dict(self.by_task),
                  "package_seconds": round(self.package_seconds, 2), "changed": self.changed,
                  "failed": self.failed, "check_mode": bool(context.CLIARGS.get("check"))}
        path = os.environ.get("KVMLAB_TASK_COUNT")
        if path:
            with open(path, "w", encoding="utf-8") as out:
                json.dump(record, out, indent=1)
        log = os.environ.get("KVMLAB_TASK_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as out:
                out.write(json.dumps(dict(record, playbook=self.playbook)) + "\n")
