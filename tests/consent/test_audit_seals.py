"""The phone's index of clip seals, built while it verifies the audit log.

A device seals each finished clip's manifest in its log (``clip.sealed``); approval then refuses a
manifest other than the sealed one. A device that re-signs a manifest later can only try to seal it
again: the phone refuses a log that seals one clip with two manifests. The index is kept in the
profile beside the checkpoint and survives reopening; it is never ahead of the checkpoint the
phone accepted, and is rebuilt from the log when it is behind.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent import SealConflict
from consent._audit_errors import AuditStateCorrupt
from consent.audit import AuditLog, audit_origin
from consent.audit_verify import FRONTIER_SUFFIX, SEALS_SUFFIX, AuditUpdate, AuditVerifier

KEY = Ed25519PrivateKey.from_private_bytes(bytes([5]) * 32)
ORIGIN = audit_origin(KEY.public_key())
A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def log() -> AuditLog:
    return AuditLog(
        sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False),
        signer=KEY,
        origin=ORIGIN,
        clock=lambda: 1_790_000_000.0,
    )


def seal(log: AuditLog, clip_id: str, digest: str) -> int:
    entry = log.append(
        "clip.sealed", clip_id=clip_id, camera="front", segment_count=3, manifest_sha256=digest
    )
    return entry.index


def start(verifier: AuditVerifier, log: AuditLog) -> AuditUpdate:
    """An update to the log's current checkpoint, fed every new entry (not committed)."""
    old = verifier.last_checkpoint
    proof = log.consistency_proof(old.size, log.size) if old is not None and old.size else []
    update = verifier.start_update(log.checkpoint(), proof)
    if not update.complete:
        update.add_entries(log.entries(update.next_index, log.size))
    return update


def audit(verifier: AuditVerifier, log: AuditLog) -> int:
    """What ``doorward owner audit`` does; returns the index of the first entry read."""
    update = start(verifier, log)
    verifier.commit(update)
    return update.first_index


def phone(path: Path) -> AuditVerifier:
    return AuditVerifier(KEY.public_key(), ORIGIN, state_path=path)


def test_the_phone_indexes_each_clip_seal_and_keeps_it(log: AuditLog, tmp_path: Path) -> None:
    state = tmp_path / "device.checkpoint"
    log.append("request.received", request_id="r1", category="theft")
    seal(log, "clip-1", A)
    seal(log, "clip-1", A)  # delivered twice (a retry after a crash): the same seal
    assert audit(phone(state), log) == 0
    seal(log, "clip-2", B)

    reopened = phone(state)  # the profile, opened again by the next command
    assert reopened.sealed(["clip-1", "clip-2", "clip-3"]) == {"clip-1": A}
    assert audit(reopened, log) == 3  # incremental: only the new entry was read
    again = phone(state)
    assert again.sealed(["clip-1", "clip-2"]) == {"clip-1": A, "clip-2": B}
    assert (tmp_path / f"device.checkpoint{SEALS_SUFFIX}").stat().st_mode & 0o077 == 0


def test_a_log_that_seals_a_clip_twice_with_two_manifests_is_refused(
    log: AuditLog, tmp_path: Path
) -> None:
    state = tmp_path / "device.checkpoint"
    seal(log, "clip-1", A)
    audit(phone(state), log)
    stored = state.read_text()
    # Later, a device that re-signed clip-1's manifest seals the new one too.
    log.append("request.received", request_id="r1", category="theft")
    second = seal(log, "clip-1", C)
    verifier = phone(state)
    with pytest.raises(SealConflict) as caught:
        start(verifier, log)
    assert str(caught.value) == (
        f"the audit log seals clip 'clip-1' twice, with manifest {A} at entry 0 and {C} at entry "
        f"{second}: a clip is sealed once, so the device re-signed its manifest; treat the device "
        "as compromised"
    )
    assert state.read_text() == stored  # nothing was accepted
    assert phone(state).sealed(["clip-1"]) == {"clip-1": A}


def test_two_seals_within_one_update_are_refused(log: AuditLog) -> None:
    seal(log, "clip-1", A)
    seal(log, "clip-1", B)
    verifier = AuditVerifier(KEY.public_key(), ORIGIN)  # in memory: the same checks
    with pytest.raises(SealConflict, match="seals clip 'clip-1' twice"):
        start(verifier, log)
    assert verifier.last_checkpoint is None
    assert verifier.sealed(["clip-1"]) == {}


def test_a_seal_the_phone_cannot_read_is_refused(log: AuditLog) -> None:
    log.append("clip.sealed", clip_id="clip-1", manifest_sha256="not a hash")
    with pytest.raises(SealConflict) as caught:
        start(AuditVerifier(KEY.public_key(), ORIGIN), log)
    assert str(caught.value) == (
        "audit entry 0 is a clip.sealed entry without a clip id and a lowercase hex SHA-256 of its "
        "manifest: the device wrote a seal no phone can check"
    )


def test_seals_of_an_update_that_was_not_stored_are_dropped(log: AuditLog, tmp_path: Path) -> None:
    # A crash after the seal index was written but before the checkpoint was: the index is ahead.
    state = tmp_path / "device.checkpoint"
    seal(log, "clip-1", A)
    audit(phone(state), log)
    saved = tmp_path / "saved"
    saved.mkdir()
    for name in (state.name, state.name + FRONTIER_SUFFIX):
        shutil.copy(tmp_path / name, saved / name)
    seal(log, "clip-2", B)
    audit(phone(state), log)
    for name in (state.name, state.name + FRONTIER_SUFFIX):
        shutil.copy(saved / name, tmp_path / name)  # back to the checkpoint before the crash

    verifier = phone(state)
    assert verifier.sealed(["clip-1", "clip-2"]) == {"clip-1": A}  # never ahead of the checkpoint
    assert audit(verifier, log) == 1
    assert phone(state).sealed(["clip-1", "clip-2"]) == {"clip-1": A, "clip-2": B}


def test_a_missing_index_is_rebuilt_from_the_log(log: AuditLog, tmp_path: Path) -> None:
    # A profile from before clip sealing has a checkpoint and a frontier but no seal index.
    state = tmp_path / "device.checkpoint"
    seal(log, "clip-1", A)
    log.append("request.received", request_id="r1", category="theft")
    audit(phone(state), log)
    (tmp_path / f"device.checkpoint{SEALS_SUFFIX}").unlink()
    seal(log, "clip-2", B)
    verifier = phone(state)
    assert verifier.sealed(["clip-1"]) == {}
    assert audit(verifier, log) == 0  # read from the start, once
    rebuilt = phone(state)
    assert rebuilt.sealed(["clip-1", "clip-2"]) == {"clip-1": A, "clip-2": B}
    assert rebuilt.verified_size == log.size


def test_an_altered_index_is_reported(log: AuditLog, tmp_path: Path) -> None:
    state = tmp_path / "device.checkpoint"
    seal(log, "clip-1", A)
    audit(phone(state), log)
    index = tmp_path / f"device.checkpoint{SEALS_SUFFIX}"
    index.write_bytes(b"not a database, but long enough to look like a header" * 4)
    with pytest.raises(AuditStateCorrupt) as caught:
        phone(state)
    assert str(caught.value) == (
        f"{index} is not the clip seal index doorward writes: the profile was altered outside "
        "doorward; delete that file to re-read the whole log and rebuild it"
    )
