# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one error type for module code that is not the module itself."""

from __future__ import annotations


class KvmlabError(Exception):
    """A failure to report as the module's (or, in a batch, one item's) result: `msg` and the
    result fields known when it happened (actions already taken, differences, xml)."""

    def __init__(self, msg: str, **result) -> None:
        super().__init__(msg)
        self.msg, self.result = msg, result
