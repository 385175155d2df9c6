"""The device's owners table: who may read clips, sign consent and change the policy.

One row per paired phone in the device database (``owners``): key id (RFC 7638 thumbprint), Ed25519
public key, age recipient, a display name, whether it is an admin, and when it was added and
removed. A removed owner keeps its row (old consent tokens and the audit log still name it) but no
longer signs anything the device accepts, and new segments are no longer encrypted to it.

Safe to share between the event loop and camera threads: one lock serialises every call.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consent.models import PairedOwner
from crypto import age
from crypto.errors import DoorwardError
from crypto.keys import PublicKeyBundle, key_id, load_ed25519_public
from crypto.signed import b64url

__all__ = ["MAX_OWNERS", "Owner", "OwnerError", "OwnersTable"]

logger = logging.getLogger(__name__)

MAX_OWNERS = 32  # every segment header carries one stanza per owner: keep headers small
_MAX_NAME_CHARS = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS owners (
    key_id TEXT PRIMARY KEY,
    ed25519 TEXT NOT NULL,
    recipient TEXT NOT NULL,
    name TEXT NOT NULL,
    admin INTEGER NOT NULL,
    added_s INTEGER NOT NULL,
    removed_s INTEGER
);
"""


_KIND_NAMES = {"mlkem768x25519": "hybrid", "X25519": "x25519"}


class OwnerError(DoorwardError):
    """An owner cannot be added or removed as asked (unknown, already paired, last admin, full)."""


@dataclass(frozen=True, slots=True)
class Owner:
    """A paired phone as the device stores it; ``removed_s`` is None while it is an owner."""

    key_id: str
    signing_public: Ed25519PublicKey = field(repr=False)
    recipient: str = field(repr=False)
    name: str
    admin: bool
    added_s: int
    removed_s: int | None

    @property
    def removed(self) -> bool:
        """Whether this owner has been removed (the device refuses its signatures)."""
        return self.removed_s is not None

    def to_json(self) -> dict[str, object]:
        """The owner as the API shows it (``GET /owners``); times in seconds since 1970."""
        return {
            "key_id": self.key_id,
            "ed25519": b64url(self.signing_public.public_bytes_raw()),
            "recipient": self.recipient,
            "name": self.name,
            "admin": self.admin,
            "added": self.added_s,
            "removed": self.removed_s,
        }


class OwnersTable:
    """The ``owners`` table of the device database."""

    def __init__(self, db_path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def add(self, keys: PublicKeyBundle, *, name: str, now: int, admin: bool = False) -> Owner:
        """Pair a new owner; the first owner ever paired is made admin whatever ``admin`` says."""
        if (
            not isinstance(name, str)
            or not 0 < len(name) <= _MAX_NAME_CHARS
            or not name.isprintable()
        ):
            raise OwnerError(f"owner name must be 1-{_MAX_NAME_CHARS} printable characters")
        kid = keys.key_id
        with self._lock:
            row = self._db.execute(
                "SELECT removed_s FROM owners WHERE key_id = ?", (kid,)
            ).fetchone()
            if row is not None:
                state = "was removed; pair a new key" if row[0] is not None else "is already paired"
                raise OwnerError(f"owner key {kid} {state}")
            active = self._db.execute(
                "SELECT COUNT(*) FROM owners WHERE removed_s IS NULL"
            ).fetchone()[0]
            if active >= MAX_OWNERS:
                raise OwnerError(f"this device already has {MAX_OWNERS} owners; remove one first")
            self._check_kind(keys.recipient)
            first = self._db.execute("SELECT COUNT(*) FROM owners").fetchone()[0] == 0
            self._db.execute(
                "INSERT INTO owners VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (
                    kid,
                    b64url(keys.signing_public.public_bytes_raw()),
                    str(keys.recipient),
                    name,
                    int(admin or first),
                    now,
                ),
            )
        logger.info("owners.added key_id=%s admin=%s", kid, admin or first)
        return self.get(kid)

    def _check_kind(self, recipient: age.Recipient) -> None:
        # An age file cannot mix post-quantum and classic recipients (that would let the classic
        # stanza undo the post-quantum protection), and every segment goes to every owner: so all
        # owners of one doorbell use the same kind of age key.
        rows = self._db.execute("SELECT recipient FROM owners WHERE removed_s IS NULL").fetchall()
        kinds = {age.parse_recipient(r[0]).stanza_type for r in rows}
        if kinds and recipient.stanza_type not in kinds:
            have = _KIND_NAMES.get(next(iter(kinds)), "other")
            want = _KIND_NAMES.get(recipient.stanza_type, "other")
            raise OwnerError(
                f"this doorbell's owners use {have} age keys and this phone has a {want} key; "
                "one file cannot be encrypted to both kinds. Make this phone's keys with "
                f"`doorward owner init --recipient {have}` and pair again"
            )

    def remove(self, owner_key_id: str, now: int) -> Owner:
        """Mark an owner removed; the last active admin cannot be removed."""
        owner = self.get(owner_key_id)
        with self._lock:
            if owner.removed:
                raise OwnerError(f"owner {owner_key_id} was already removed")
            if owner.admin:
                admins = self._db.execute(
                    "SELECT COUNT(*) FROM owners WHERE admin = 1 AND removed_s IS NULL"
                ).fetchone()[0]
                if admins <= 1:
                    raise OwnerError(
                        f"owner {owner_key_id} is the last admin; make another owner admin first"
                    )
            self._db.execute(
                "UPDATE owners SET removed_s = ? WHERE key_id = ?", (now, owner_key_id)
            )
        logger.info("owners.removed key_id=%s", owner_key_id)
        return self.get(owner_key_id)

    def get(self, owner_key_id: str) -> Owner:
        """The owner with this key id, removed or not; raises OwnerError."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM owners WHERE key_id = ?", (owner_key_id,)
            ).fetchone()
        if row is None:
            raise OwnerError(f"no owner with key id {owner_key_id[:64]!r}")
        return _owner(row)

    def list_owners(self, *, include_removed: bool = False) -> list[Owner]:
        """Owners in the order they were added."""
        sql = "SELECT * FROM owners"
        if not include_removed:
            sql += " WHERE removed_s IS NULL"
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY added_s, rowid").fetchall()
        return [_owner(r) for r in rows]

    def active(self, owner_key_id: str) -> Owner | None:
        """The owner if it is paired and not removed, else None (used on every signed request)."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM owners WHERE key_id = ? AND removed_s IS NULL", (owner_key_id,)
            ).fetchone()
        return None if row is None else _owner(row)

    def count(self) -> int:
        """How many owners are paired now (not removed)."""
        with self._lock:
            return int(
                self._db.execute("SELECT COUNT(*) FROM owners WHERE removed_s IS NULL").fetchone()[
                    0
                ]
            )

    def recipients(self) -> list[age.Recipient]:
        """The age recipients of the current owners: what every new segment is encrypted to."""
        return [age.parse_recipient(o.recipient) for o in self.list_owners()]

    def paired_owners(self) -> list[PairedOwner]:
        """Every owner ever paired, removed ones flagged, as ``consent.desk`` expects."""
        return [
            PairedOwner(o.key_id, o.signing_public, o.removed)
            for o in self.list_owners(include_removed=True)
        ]


def _owner(row: tuple[object, ...]) -> Owner:
    kid, ed25519, recipient, name, admin, added_s, removed_s = row
    public = load_ed25519_public(str(ed25519))
    if key_id(public) != kid:
        raise OwnerError(
            f"owners table row {kid!r} does not match its key; the database is damaged"
        )
    return Owner(
        key_id=str(kid),
        signing_public=public,
        recipient=str(recipient),
        name=str(name),
        admin=bool(admin),
        added_s=int(added_s),  # type: ignore[call-overload]
        removed_s=None if removed_s is None else int(removed_s),  # type: ignore[call-overload]
    )
