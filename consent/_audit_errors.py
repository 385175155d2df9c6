"""Errors raised by the audit log (device side) and its verifier (owner side).

Hierarchy::

    DoorwardError
    └── AuditError              something about the audit log is wrong
        ├── AuditEntryRejected  an entry was refused before it was written (unknown kind, key material)
        ├── ProofError          an inclusion or consistency proof does not verify
        ├── CheckpointError     a checkpoint (signed note) is malformed or not signed by the device
        ├── LogInconsistent     the device's log contradicts the owner's last checkpoint (rollback, fork)
        └── EntriesTampered     the entries served do not hash to the signed root

Messages name sizes, indices and kinds; they never contain key material.
"""

from __future__ import annotations

from crypto.errors import DoorwardError

__all__ = [
    "AuditEntryRejected",
    "AuditError",
    "CheckpointError",
    "EntriesTampered",
    "LogInconsistent",
    "ProofError",
]


class AuditError(DoorwardError):
    """The audit log or one of its proofs is not what it must be."""


class AuditEntryRejected(AuditError):
    """An entry was refused before being written: fix the caller (kind or fields)."""


class ProofError(AuditError):
    """A Merkle inclusion or consistency proof does not verify against the given root."""


class CheckpointError(AuditError):
    """A checkpoint is malformed or not signed by the expected device key: refuse it."""


class LogInconsistent(AuditError):
    """The device's log is not an extension of the last checkpoint this phone saw.

    The device rolled its log back, rewrote history, or shows different logs to different phones.
    Treat the device as compromised until an owner has looked at it.
    """


class EntriesTampered(AuditError):
    """The entries the device served do not hash to its signed checkpoint: they were altered."""
