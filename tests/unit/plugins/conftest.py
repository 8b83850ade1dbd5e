"""Fixtures shared by the plugins' unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def gdir(tmp_path):
    """A guest's backup directory, named as hostile strings are: spaces, '&', a quote, non-ASCII."""
    g = tmp_path / "win 11 & ü's"
    g.mkdir()
    return g
