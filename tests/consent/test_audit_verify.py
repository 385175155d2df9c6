"""Owner side of the audit log: rollback, forks, tampered checkpoints and tampered entries."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import _merkle
from consent._audit_errors import (
    CheckpointError,
    EntriesTampered,
    LogInconsistent,
    ProofError,
)
from consent.audit import AuditLog, audit_origin
from consent.audit_verify import AuditVerifier

KEY = Ed25519PrivateKey.from_private_bytes(bytes([3]) * 32)
ORIGIN = audit_origin(KEY.public_key())


def make_log(n: int = 0, tag: str = "a") -> AuditLog:
    log = AuditLog(
        sqlite3.connect(":memory:", isolation_level=None),
        signer=KEY,
        origin=ORIGIN,
        clock=lambda: 1_790_000_000.0,
    )
    for i in range(n):
        log.append("request.received", request_id=f"{tag}-{i}", category="theft")
    return log


def make_verifier(state_path: Path | None = None) -> AuditVerifier:
    return AuditVerifier(KEY.public_key(), ORIGIN, state_path=state_path)


def test_first_checkpoint_is_trusted_and_stored(tmp_path: Path) -> None:
    log = make_log(5)
    state = tmp_path / "audit.checkpoint"
    verifier = make_verifier(state)
    assert verifier.last_checkpoint is None
    checkpoint = verifier.verify_update(log.checkpoint(), [])
    assert (checkpoint.size, checkpoint.root_hash) == (5, log.root())
    assert state.read_text() == verifier.last_checkpoint_text
    # A new session on the phone starts from the stored checkpoint.
    again = make_verifier(state)
    assert again.last_checkpoint == checkpoint


def test_updates_along_a_growing_log(tmp_path: Path) -> None:
    log = make_log(3)
    verifier = make_verifier(tmp_path / "state")
    verifier.verify_update(log.checkpoint(), [])
    for step in range(1, 30):
        for i in range(step % 4):
            log.append("release.downloaded", release_id=f"r{step}-{i}")
        old = verifier.last_checkpoint
        assert old is not None
        proof = log.consistency_proof(old.size, log.size)
        assert verifier.verify_update(log.checkpoint(), proof).size == log.size
    assert verifier.verify_entries(log.entries(), log.checkpoint()).size == log.size


def test_rollback_is_refused(tmp_path: Path) -> None:
    verifier = make_verifier(tmp_path / "state")
    verifier.verify_update(make_log(10).checkpoint(), [])
    stored = verifier.last_checkpoint_text
    with pytest.raises(
        LogInconsistent, match=r"^device log shrank from 10 to 6 entries: it was rolled back$"
    ):
        verifier.verify_update(make_log(6).checkpoint(), [])
    assert verifier.last_checkpoint_text == stored
    assert (tmp_path / "state").read_text() == stored


def test_fork_of_the_same_size_is_detected() -> None:
    verifier = make_verifier()
    verifier.verify_update(make_log(8, tag="shown-to-alice").checkpoint(), [])
    with pytest.raises(LogInconsistent) as info:
        verifier.verify_update(make_log(8, tag="shown-to-bob").checkpoint(), [])
    assert str(info.value) == (
        "checkpoint of size 8 does not extend the stored checkpoint of size 8: the device's log "
        "forked or was rewritten (two different roots for the same tree size 8)"
    )


def test_fork_that_grew_is_detected() -> None:
    verifier = make_verifier()
    verifier.verify_update(make_log(8, tag="alice").checkpoint(), [])
    other = make_log(13, tag="bob")
    with pytest.raises(
        LogInconsistent, match=r"forked or was rewritten \(consistency proof from 8 to 13"
    ):
        verifier.verify_update(other.checkpoint(), other.consistency_proof(8, 13))


def test_tampered_or_foreign_checkpoints_are_refused() -> None:
    log = make_log(4)
    verifier = make_verifier()
    note = log.checkpoint()
    with pytest.raises(CheckpointError, match=r"does not verify: the note was altered$"):
        verifier.verify_update(note.replace("\n4\n", "\n5\n"), [])
    stranger = AuditLog(
        sqlite3.connect(":memory:"),
        signer=Ed25519PrivateKey.from_private_bytes(bytes([4]) * 32),
        origin=ORIGIN,
    )
    with pytest.raises(CheckpointError, match=rf"^note is not signed by {ORIGIN}\+"):
        verifier.verify_update(stranger.checkpoint(), [])
    assert verifier.last_checkpoint is None
    with pytest.raises(
        ProofError, match=r"^the first checkpoint takes an empty consistency proof$"
    ):
        verifier.verify_update(note, [log.root()])


def test_tampered_state_file_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    make_verifier(state).verify_update(make_log(4).checkpoint(), [])
    state.write_text(state.read_text().replace("\n4\n", "\n3\n"))
    with pytest.raises(CheckpointError, match=r"does not verify: the note was altered$"):
        make_verifier(state)


def test_inclusion_of_every_entry() -> None:
    log = make_log(21)
    note = log.checkpoint()
    verifier = make_verifier()
    for entry in log.entries():
        proof = log.inclusion_proof(entry.index, log.size)
        assert verifier.verify_inclusion(entry.leaf, entry.index, proof, note).size == 21
        with pytest.raises(ProofError):
            verifier.verify_inclusion(entry.leaf + b" ", entry.index, proof, note)
    # Proofs survive JSON transport.
    proof = _merkle.decode_proof(_merkle.encode_proof(log.inclusion_proof(7, 21)))
    verifier.verify_inclusion(log.entries(7, 8)[0].leaf, 7, proof, note)


def test_entry_errors_are_specific() -> None:
    log = make_log(6)
    note = log.checkpoint()
    entries = log.entries()
    verifier = make_verifier()
    with pytest.raises(
        EntriesTampered,
        match=r"^5 entries served for a checkpoint of 6: entries were dropped or inserted$",
    ):
        verifier.verify_entries(entries[:5], note)
    swapped = [entries[1], entries[0], *entries[2:]]
    with pytest.raises(
        EntriesTampered,
        match=r"^entry at position 0 claims another index: entries were reordered, dropped or "
        r"inserted$",
    ):
        verifier.verify_entries(swapped, note)
    edited = [e.leaf for e in entries]
    edited[3] = edited[3].replace(b"theft", b"other")
    with pytest.raises(
        EntriesTampered,
        match=r"^the 6 entries do not hash to the checkpoint's root: an entry was altered$",
    ):
        verifier.verify_entries(edited, note)
    assert verifier.verify_entries([e.leaf for e in entries], note).size == 6
    verifier.verify_update(note, [])
    with pytest.raises(
        LogInconsistent,
        match=r"^checkpoint of size 0 is older than the stored one of size 6: the device rolled "
        r"its log back$",
    ):
        verifier.verify_entries([], make_log(0).checkpoint())


# --- random mutations of the stored rows ---

MUTATIONS = ("truncate", "edit", "swap", "insert", "delete")


def rewrite_rows(db: sqlite3.Connection, leaves: list[bytes], rebuild_tree: bool) -> None:
    """What an attacker holding the database file does: rewrite the leaf rows, and optionally
    recompute every stored node so that the device signs a self-consistent forged tree."""
    for table in ("audit_leaves", "audit_nodes"):
        for op in ("update", "delete"):
            db.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_{op}")
    db.execute("DELETE FROM audit_leaves")
    db.executemany("INSERT INTO audit_leaves (idx, leaf) VALUES (?, ?)", enumerate(leaves))
    if rebuild_tree:
        db.execute("DELETE FROM audit_nodes")
        frontier: list[bytes] = []
        for size, leaf in enumerate(leaves):
            nodes = _merkle.extend_frontier(frontier, size, _merkle.leaf_hash(leaf))
            db.executemany("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)


def mutate(leaves: list[bytes], kind: str, data: st.DataObject) -> list[bytes]:
    n = len(leaves)
    out = list(leaves)
    if kind == "truncate":
        return out[: data.draw(st.integers(0, n - 1), label="keep")]
    if kind == "edit" or (kind == "swap" and n < 2):
        i = data.draw(st.integers(0, n - 1), label="entry")
        byte = data.draw(st.integers(0, len(out[i]) - 1), label="byte")
        bit = data.draw(st.integers(0, 7), label="bit")
        edited = bytearray(out[i])
        edited[byte] ^= 1 << bit
        out[i] = bytes(edited)
    elif kind == "swap":
        i, j = data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
        out[i], out[j] = out[j], out[i]
    elif kind == "insert":
        # Before an existing entry: adding after the last one is an ordinary append.
        i = data.draw(st.integers(0, n - 1), label="position")
        out.insert(i, b'{"index":%d,"kind":"release.created","release_id":"forged"}' % i)
    else:
        del out[data.draw(st.integers(0, n - 1), label="entry")]
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 24),
    kind=st.sampled_from(MUTATIONS),
    extra=st.integers(0, 6),
    rebuild_tree=st.booleans(),
    data=st.data(),
)
def test_any_mutation_of_stored_entries_is_detected(
    n: int, kind: str, extra: int, rebuild_tree: bool, data: st.DataObject
) -> None:
    log = make_log(n)
    phone = make_verifier()
    phone.verify_update(log.checkpoint(), [])
    phone.verify_entries(log.entries(), log.checkpoint())
    seen = phone.last_checkpoint
    assert seen is not None

    forged = mutate([e.leaf for e in log.entries()], kind, data)
    assert forged != [e.leaf for e in log.entries()]
    db = log._db  # the attacker's handle on the file
    rewrite_rows(db, forged, rebuild_tree)
    # Life goes on: the device appends more entries after the tampering.
    for i in range(extra if rebuild_tree else 0):
        log.append("request.pending", request_id=f"later-{i}")

    # The phone sees the entries the device now serves...
    served = log.entries()
    with pytest.raises((EntriesTampered, LogInconsistent)):
        phone.verify_entries(served, phone.last_checkpoint_text or "")
    if rebuild_tree:
        # ...and the fresh checkpoint the device signs over its forged tree.
        note = log.checkpoint()
        with pytest.raises((EntriesTampered, LogInconsistent)):
            phone.verify_entries(served, note)
        new_size = log.size
        proof = log.consistency_proof(seen.size, new_size) if new_size >= seen.size else []
        with pytest.raises(LogInconsistent):
            phone.verify_update(note, proof)
    assert phone.last_checkpoint == seen
