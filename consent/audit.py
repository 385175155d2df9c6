"""Doorward's tamper-evident audit log, device side.

Every request, decision, release, download, pairing change, policy change, finished clip (the
hash of its sealed manifest) and clip deletion is appended as a canonical-JSON leaf to an RFC 9162
Merkle tree kept in SQLite. The device signs checkpoints (C2SP tlog-checkpoint, Ed25519, origin
``doorward/<device-id>``) and serves inclusion and consistency proofs; phones check them with
``consent.audit_verify``.

Storage: ``audit_leaves`` holds the leaves, ``audit_nodes`` the hash of every complete perfect
subtree (level, index), written in the same transaction as its last leaf. Appending writes at
most log₂ n + 1 nodes; a proof reads O(log² n) nodes at worst; nothing rereads the whole tree.

What an entry may hold (enforced by ``append``):

* ``kind`` is one of ``ENTRY_KINDS``; ``kind``, ``index`` and ``time`` are set by the log.
* Field names are lowercase snake case. Values are JSON: strings, integers, booleans, null,
  lists and objects (no floats, no bytes: write hashes as hex), strings at most 1024 characters,
  the whole leaf at most 4096 bytes — ids, hashes, decisions and reasons, never content.
* No key material. A field whose name contains one of the words key, secret, token, identity,
  private, password, passphrase, seed or code (``requester_key``, ``token``) may hold only
  strings of at most 16 characters, unless its name ends in id, ids, hash, sha256, kind, type,
  count or fingerprint (``requester_key_id``, ``token_sha256``). No string anywhere may contain
  an age secret key or a PEM/signed-note private key marker.

Concurrency: one lock serialises every call, so an ``AuditLog`` may be shared between threads
(a connection the log opens itself allows that; a connection passed in must too). Each append
runs inside a SAVEPOINT: it is all or nothing, and commits with the caller's transaction when
the caller has one open.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consent import _merkle
from consent._audit_errors import AuditEntryRejected, AuditError
from consent._db import open_db
from consent._note import Checkpoint, NoteVerifier, sign_checkpoint
from crypto.keys import device_id
from crypto.signed import canonical_json

__all__ = [
    "ENTRY_KINDS",
    "MAX_ENTRIES_PER_READ",
    "MAX_LEAF_BYTES",
    "AuditEntry",
    "AuditLog",
    "audit_origin",
]

logger = logging.getLogger(__name__)

ENTRY_KINDS = frozenset(
    {
        "request.received",
        "request.auto_declined",
        "request.pending",
        "request.approved",
        "request.declined",
        "release.created",
        "release.downloaded",
        "release.sent",
        "release.revoked",
        "release.expired",
        # The bundle went to the off-site store (release_id, bytes, sha256), and each presigned
        # URL issued for it (release_id, requester, link, expires; never the URL).
        "release.uploaded",
        "release.presigned",
        "owner.added",
        "owner.removed",
        "pairing.failed",
        "policy.changed",
        "clip.deleted",
        # A finished clip's last signed manifest: clip_id, camera, segment_count, manifest_sha256.
        # Phones refuse to approve from a manifest other than the one sealed.
        "clip.sealed",
        "live.started",
        "live.ended",
        # An owner talked back through the doorbell's speaker: talk.started (session_id, camera,
        # owner_key_id, via), talk.ended (the same, reason, seconds).
        "talk.started",
        "talk.ended",
        # A hostile or invalid token, request or fetch refused by the device.
        "consent.refused",
        # Refusals of one requester key or address past the quiet threshold, counted per period.
        "consent.refusals_counted",
        # Off-site backup: segments of a clip that will never be uploaded (clip_id, segment_count,
        # reason), and a clip's objects deleted from the bucket by retention (clip_id,
        # object_count, reason).
        "backup.skipped",
        "backup.deleted",
    }
)
MAX_LEAF_BYTES = 4096
MAX_ENTRIES_PER_READ = 10_000
_MAX_STRING_CHARS = 1024
_MAX_DEPTH = 4
_FIELD_RE = re.compile(r"[a-z][a-z0-9_]{0,47}")
_RESERVED = frozenset({"kind", "index", "time"})
_SENSITIVE_WORDS = frozenset(
    {"key", "secret", "token", "identity", "private", "password", "passphrase", "seed", "code"}
    | {"keys", "secrets", "tokens", "identities", "passwords", "passphrases", "seeds", "codes"}
)
_SAFE_SUFFIXES = frozenset({"id", "ids", "hash", "sha256", "kind", "type", "count", "fingerprint"})
_SHORT_VALUE_CHARS = 16
_SECRET_MARKERS = ("AGE-SECRET-KEY-", "PRIVATE KEY", "PRIVATE+KEY")

_TRIGGER = """CREATE TRIGGER IF NOT EXISTS {table}_append_only_{name} BEFORE {op} ON {table}
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"""
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit_leaves (idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_nodes (level INTEGER NOT NULL, idx INTEGER NOT NULL, "
    "hash BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID",
    # A guard against our own bugs, not against someone holding the file: the owner's phone is
    # what detects that.
    *(
        _TRIGGER.format(table=table, op=op, name=op.lower())
        for table in ("audit_leaves", "audit_nodes")
        for op in ("UPDATE", "DELETE")
    ),
)


def audit_origin(public_key: Ed25519PublicKey) -> str:
    """The log origin (and checkpoint key name) of a device: ``doorward/<device-id>``."""
    return f"doorward/{device_id(public_key)}"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One leaf of the log: its index, canonical-JSON bytes and RFC 9162 leaf hash."""

    index: int
    leaf: bytes
    leaf_hash: bytes

    def body(self) -> dict[str, Any]:
        """The leaf as a JSON object (kind, index, time and the entry's fields)."""
        body: dict[str, Any] = json.loads(self.leaf)
        return body


class AuditLog:
    """Append-only Merkle-tree log in SQLite, signing checkpoints with the device key."""

    def __init__(
        self,
        db: Path | str | sqlite3.Connection,
        *,
        signer: Ed25519PrivateKey,
        origin: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verifier = NoteVerifier(origin, signer.public_key())
        self._signer = signer
        self._origin = origin
        self._clock = clock
        self._lock = threading.Lock()
        self._db, self._owns_db = open_db(db)
        if self._owns_db:
            # A signed checkpoint must never cover an entry that a power cut could undo.
            self._db.execute("PRAGMA synchronous=FULL")
        for statement in _SCHEMA:
            self._db.execute(statement)

    @property
    def origin(self) -> str:
        """The log's origin line, also the key name of its checkpoint signatures."""
        return self._origin

    @property
    def note_verifier(self) -> NoteVerifier:
        """The device's checkpoint verifier key (name = origin)."""
        return self._verifier

    @property
    def verifier_key(self) -> str:
        """The note verifier key phones pin: ``<origin>+<key id>+<base64 key>``."""
        return str(self._verifier)

    @property
    def size(self) -> int:
        """Number of entries in the log."""
        with self._lock:
            return self._size()

    def append(self, kind: str, **fields: Any) -> AuditEntry:
        """Append one entry (see the module doc for what it may hold) and return it."""
        _check_entry(kind, fields)
        timestamp = datetime.fromtimestamp(int(self._clock()), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            self._db.execute("SAVEPOINT audit_append")
            try:
                index = self._size()
                leaf = canonical_json({**fields, "kind": kind, "index": index, "time": timestamp})
                if len(leaf) > MAX_LEAF_BYTES:
                    raise AuditEntryRejected(
                        f"audit entry {kind} is {len(leaf)} bytes; the limit is {MAX_LEAF_BYTES} "
                        "(entries hold ids, hashes and reasons, not content)"
                    )
                leaf_hash = _merkle.leaf_hash(leaf)
                frontier = [self._node(level, i) for level, i in _merkle.frontier_positions(index)]
                nodes = _merkle.extend_frontier(frontier, index, leaf_hash)
                self._db.execute(
                    "INSERT INTO audit_leaves (idx, leaf) VALUES (?, ?)", (index, leaf)
                )
                self._db.executemany(
                    "INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes
                )
            except BaseException:
                self._db.execute("ROLLBACK TO audit_append")
                self._db.execute("RELEASE audit_append")
                raise
            self._db.execute("RELEASE audit_append")
        logger.debug("audit.appended index=%d kind=%s", index, kind)
        return AuditEntry(index, leaf, leaf_hash)

    def entries(self, start: int = 0, end: int | None = None) -> list[AuditEntry]:
        """Entries ``[start, end)`` (end defaults to the size), at most MAX_ENTRIES_PER_READ."""
        with self._lock:
            size = self._size()
            end = size if end is None else end
            if not 0 <= start <= end <= size:
                raise ValueError(f"entry range must lie within [0, {size}], got [{start}, {end})")
            if end - start > MAX_ENTRIES_PER_READ:
                raise ValueError(f"read at most {MAX_ENTRIES_PER_READ} entries at a time")
            rows = self._db.execute(
                "SELECT idx, leaf FROM audit_leaves WHERE idx >= ? AND idx < ? ORDER BY idx",
                (start, end),
            ).fetchall()
        return [AuditEntry(i, bytes(leaf), _merkle.leaf_hash(bytes(leaf))) for i, leaf in rows]

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the first ``size`` entries (default: all)."""
        with self._lock:
            current = self._size()
            size = current if size is None else size
            if not 0 <= size <= current:
                raise ValueError(f"tree size must be in [0, {current}], got {size}")
            return _merkle.range_hash(0, size, self._node)

    def checkpoint(self) -> str:
        """A signed checkpoint note of the log as it is now."""
        with self._lock:
            size = self._size()
            root = _merkle.range_hash(0, size, self._node)
        note = sign_checkpoint(Checkpoint(self._origin, size, root), self._signer)
        logger.debug("audit.checkpoint size=%d", size)
        return note

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``index`` in the tree of ``tree_size`` entries."""
        with self._lock:
            self._check_size(tree_size)
            return _merkle.inclusion_proof(index, tree_size, self._node)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof from tree size ``old_size`` to ``new_size``."""
        with self._lock:
            self._check_size(new_size)
            return _merkle.consistency_proof(old_size, new_size, self._node)

    def close(self) -> None:
        """Close the database connection if this log opened it."""
        if self._owns_db:
            self._db.close()

    def __repr__(self) -> str:
        return f"AuditLog(origin={self._origin!r})"

    def _size(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_leaves").fetchone()
        size: int = row[0]
        return size

    def _check_size(self, tree_size: int) -> None:
        size = self._size()
        if not 0 <= tree_size <= size:
            raise ValueError(f"tree size must be in [0, {size}], got {tree_size}")

    def _node(self, level: int, index: int) -> bytes:
        row = self._db.execute(
            "SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?", (level, index)
        ).fetchone()
        if row is None:
            raise AuditError(
                f"audit log storage lacks node level={level} index={index}: "
                "the database was altered or damaged"
            )
        return bytes(row[0])


def _check_entry(kind: str, fields: dict[str, Any]) -> None:
    if kind not in ENTRY_KINDS:
        raise AuditEntryRejected(
            f"unknown audit entry kind {str(kind)[:64]!r}; use one of consent.audit.ENTRY_KINDS"
        )
    for name, value in fields.items():
        if name in _RESERVED:
            raise AuditEntryRejected(f"audit field {name!r} is set by the log itself")
        _check_value(name, name, value, 0)


def _check_value(path: str, name: str, value: Any, depth: int) -> None:
    if not _FIELD_RE.fullmatch(name):
        raise AuditEntryRejected(f"audit field name {path[:80]!r} must be lowercase snake case")
    if depth > _MAX_DEPTH:
        raise AuditEntryRejected(f"audit field {path!r} nests deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, str):
        _check_string(path, name, value)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_value(path, name, item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditEntryRejected(f"audit field {path!r} has a non-string key")
            _check_value(f"{path}.{key}", key, item, depth + 1)
    else:
        raise AuditEntryRejected(
            f"audit field {path!r} must be a JSON string, integer, boolean, null, list or object, "
            f"got {type(value).__name__} (write hashes as hex)"
        )


def _check_string(path: str, name: str, value: str) -> None:
    if len(value) > _MAX_STRING_CHARS:
        raise AuditEntryRejected(
            f"audit field {path!r} holds {len(value)} characters; the limit is {_MAX_STRING_CHARS}"
        )
    upper = value.upper()
    if any(marker in upper for marker in _SECRET_MARKERS):
        raise AuditEntryRejected(f"audit field {path!r} holds a private key; never log keys")
    words = name.split("_")
    if (
        len(value) > _SHORT_VALUE_CHARS
        and _SENSITIVE_WORDS.intersection(words)
        and words[-1] not in _SAFE_SUFFIXES
    ):
        raise AuditEntryRejected(
            f"audit field {path!r} looks like key material ({len(value)} characters under a "
            "key/secret/token name); log its id or hash instead"
        )
