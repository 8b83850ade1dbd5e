# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attributes shared by the collection's modules."""

from __future__ import annotations


class ModuleDocFragment:
    # Modules that only read the host.
    READ_ONLY = r"""
attributes:
  check_mode:
    support: full
    description: Reads only.
  diff_mode:
    support: none
    description: Reads only; there is nothing to diff.
"""
