"""Errors raised by the audit log (device side) and its verifier (owner side).

Hierarchy::

    DoorwardError
    └── AuditError              something about the audit log is wrong
        ├── AuditEntryRejected  an entry was refused before it was written (unknown kind, key material)
        ├── ProofError          an inclusion or consistency proof does not verify
        ├── CheckpointError     a checkpoint (signed note) is malformed or not signed by the device
        │   └── CosignatureError    an owner's cosignature is malformed, missing or does not verify
        ├── LogInconsistent     the device's log contradicts the owner's last checkpoint (rollback, fork)
        │   ├── SplitView       the device showed another owner a log this one is not consistent with
        │   └── SealConflict    the log seals one clip with two manifests (or with an unreadable seal)
        ├── EntriesTampered     the entries served do not hash to the signed root
        └── AuditStateCorrupt   the phone's stored audit state (checkpoint, frontier) was altered

Messages name sizes, indices and kinds; they never contain key material.
"""

from __future__ import annotations

from crypto.errors import DoorwardError

__all__ = [
    "AuditEntryRejected",
    "AuditError",
    "AuditStateCorrupt",
    "CheckpointError",
    "CosignatureError",
    "EntriesTampered",
    "LogInconsistent",
    "ProofError",
    "SealConflict",
    "SplitView",
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


class CosignatureError(CheckpointError):
    """An owner's cosignature (C2SP tlog-cosignature) is malformed, missing or does not verify."""


class SplitView(LogInconsistent):
    """Another owner cosigned a checkpoint this phone's view of the log is not consistent with.

    The device shows different logs to different owners. Compare the owners' phones in person and
    treat the device as compromised.
    """


class SealConflict(LogInconsistent):
    """The log seals one clip with two different manifests, or holds a seal no phone can read.

    A clip is sealed once, when it finishes; a second seal with another manifest is the device
    trying to pass off a re-signed manifest (segments relabelled). Treat it as compromised.
    """


class AuditStateCorrupt(AuditError):
    """The audit state stored in this phone's profile does not match its signed checkpoint
    (or the clip seal index kept with it is not one doorward wrote).

    Something other than this program changed the profile. Delete the named file to re-read and
    re-verify the whole log from the stored checkpoint.
    """
