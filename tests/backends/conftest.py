"""Fixtures of the SqliteStore tests."""
from __future__ import annotations

import sqlite3

import pytest

from edgeim.backends import sqlite as sqlite_store


@pytest.fixture
def never_idle(monkeypatch):
    """The writer never finds itself idle: it indexes messages for search only when a
    search asks, and writes the retry keys it holds only when it holds KEYS_HELD or stops."""
    monkeypatch.setattr(sqlite_store, "INDEX_IDLE", 3600.0)


@pytest.fixture
def database_at():
    """``database_at(path, step)``: a SQLite file at migration ``step``, as a version of
    the store that stopped there left it, open (autocommit) for the test to fill before
    the store migrates it."""
    def make(path, step: int) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None)
        for script in sqlite_store.MIGRATIONS[:step]:
            for statement in sqlite_store._split_sql(script):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {step}")
        return conn
    return make
