"""Fixtures of the SqliteStore tests."""
from __future__ import annotations

import pytest

from edgeim.backends import sqlite as sqlite_store


@pytest.fixture
def never_idle(monkeypatch):
    """The writer never finds itself idle: it indexes messages for search only when a
    search asks, and writes the retry keys it holds only when it holds KEYS_HELD or stops."""
    monkeypatch.setattr(sqlite_store, "INDEX_IDLE", 3600.0)
