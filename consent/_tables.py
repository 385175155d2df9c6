"""SQLite tables of the device's consent desk, in the same database file as the clip store.

``requests``: every request received, with its status, the rule or reason of a refusal, and the
client address group it came from (``consent._request_limits.address_group``; null for requests
stored before it was kept).
``consents``: every owner token id accepted (approve, decline, revoke), so none is used twice.
``releases``: approved releases, their token and manifest, download count and audit entry.
``consent_policy``: the owner-signed policy in force (one row).
"""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA", "migrate"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    requester_key_id TEXT NOT NULL,
    received_s INTEGER NOT NULL,
    expires_at_s INTEGER NOT NULL,
    status TEXT NOT NULL,
    rule TEXT,
    reason TEXT,
    client TEXT
);
CREATE INDEX IF NOT EXISTS requests_by_requester ON requests (requester_key_id, received_s);
CREATE TABLE IF NOT EXISTS consents (
    token_id TEXT PRIMARY KEY,
    typ TEXT NOT NULL,
    owner_key_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    received_s INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    release_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    token TEXT NOT NULL,
    manifest BLOB NOT NULL,
    owner_key_id TEXT NOT NULL,
    owner_public TEXT NOT NULL,
    requester_key_id TEXT NOT NULL,
    expires_at_s INTEGER NOT NULL,
    max_downloads INTEGER NOT NULL,
    downloads INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0,
    audit_index INTEGER NOT NULL,
    audit_leaf BLOB NOT NULL,
    clip_manifests BLOB NOT NULL,
    ended INTEGER NOT NULL DEFAULT 0,
    created_s INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS consent_policy (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    document TEXT NOT NULL,
    issued_at_s INTEGER NOT NULL
);
"""


def migrate(db: sqlite3.Connection) -> None:
    """Bring an older database up to :data:`SCHEMA` (columns added since), then index it."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
    if "client" not in columns:
        db.execute("ALTER TABLE requests ADD COLUMN client TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS requests_by_client ON requests (client, received_s)")
    db.execute("CREATE INDEX IF NOT EXISTS requests_by_status ON requests (status, expires_at_s)")
