# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fail a --check run that predicts any change.

Molecule's `check` action runs the converge playbook with --check but only fails on task
errors. Right after converge and idempotence a check run must predict nothing at all; this
callback lists every task that says it would change something and ends the run with exit code
3, so the scenario fails. Runs without --check are not affected, and neither are runs with
KVMLAB_CHECK_GUARD=0 (verify tests that judge a check run's predictions themselves).
"""

from __future__ import annotations

import os
import sys

from ansible import context
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: check_no_change
type: aggregate
short_description: Fail a check-mode run that predicts a change
description:
  - In check mode, records each task result that reports a change and, at the end of the
    playbook, prints them and exits with status 3.
requirements:
  - enabled in callbacks_enabled
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "check_no_change"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.predicted: list[str] = []

    def _record(self, result, item: str = "") -> None:
        if result._result.get("changed"):
            label = "%s: %s" % (result._host.get_name(), result._task.get_name())
            self.predicted.append(label + (" (%s)" % item if item else ""))

    def v2_runner_on_ok(self, result) -> None:
        # Loop results are reported per item below; the aggregate would count them twice.
        if not result._result.get("results"):
            self._record(result)

    def v2_runner_item_on_ok(self, result) -> None:
        self._record(result, str(result._result.get("_ansible_item_label",
                                                    result._result.get("item", ""))))

    def v2_playbook_on_stats(self, stats) -> None:
        if not context.CLIARGS.get("check") or not self.predicted or os.environ.get("KVMLAB_CHECK_GUARD") == "0":
            return
        self._display.error(
            "check mode predicted %d change(s) on a converged host:\n  %s"
            % (len(self.predicted), "\n  ".join(self.predicted)))
        sys.exit(3)
