"""The SQLite connection a consent store works on: the caller's, or one of its own."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_db(db: sqlite3.Connection | Path | str) -> tuple[sqlite3.Connection, bool]:
    """``db`` itself if it is a connection (its owner closes it), else a new autocommit
    connection in WAL mode, usable from any thread; the flag is whether the caller owns it."""
    if isinstance(db, sqlite3.Connection):
        return db, False
    connection = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    return connection, True
