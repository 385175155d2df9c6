"""Split views: a device showing two owners two logs is caught through the owners' cosignatures."""

from __future__ import annotations

import sqlite3

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent._audit_errors import CheckpointError, CosignatureError, SplitView
from consent._note import Checkpoint, NoteVerifier, open_checkpoint
from consent.audit import AuditLog, audit_origin
from consent.audit_verify import AuditVerifier
from consent.cosignatures import CosignatureBook
from consent.witness import check_cosigned, cosign, open_cosigned, proof_sizes
from crypto.keys import key_id

DEVICE = Ed25519PrivateKey.from_private_bytes(bytes([3]) * 32)
ORIGIN = audit_origin(DEVICE.public_key())
ALICE = Ed25519PrivateKey.from_private_bytes(bytes([11]) * 32)
BOB = Ed25519PrivateKey.from_private_bytes(bytes([12]) * 32)
ALICE_ID, BOB_ID = key_id(ALICE.public_key()), key_id(BOB.public_key())
OWNERS = {ALICE_ID: ALICE.public_key(), BOB_ID: BOB.public_key()}
NOW = 1_790_000_000


def make_log(n: int, tag: str) -> AuditLog:
    log = AuditLog(
        sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False),
        signer=DEVICE,
        origin=ORIGIN,
        clock=lambda: float(NOW),
    )
    for i in range(n):
        log.append("request.received", request_id=f"{tag}-{i}", category="theft")
    return log


def phone_checks(log: AuditLog) -> tuple[AuditVerifier, Checkpoint]:
    """A phone's full audit of ``log`` (no stored state)."""
    verifier = AuditVerifier(DEVICE.public_key(), ORIGIN)
    update = verifier.start_update(log.checkpoint(), [])
    if not update.complete:
        update.add_entries(log.entries())
    return verifier, verifier.commit(update)


def open_verifier() -> NoteVerifier:
    return NoteVerifier(ORIGIN, DEVICE.public_key())


def check_all(mine: Checkpoint, note: str, log_for_proofs: AuditLog) -> None:
    """What a phone does with each cosigned checkpoint the device serves."""
    for other in open_cosigned(note, open_verifier(), OWNERS):
        sizes = proof_sizes(mine, other.checkpoint)
        proof = None
        if sizes is not None and sizes[1] <= log_for_proofs.size:
            proof = log_for_proofs.consistency_proof(*sizes)
        check_cosigned(mine, other, proof)


def test_the_fork_of_two_views_is_detected_by_the_second_phone() -> None:
    # The device keeps one log for Alice and another for Bob, both signed with its key.
    shown_to_alice, shown_to_bob = make_log(8, "alice"), make_log(8, "bob")
    alice_verifier, alice_view = phone_checks(shown_to_alice)
    _bob_verifier, bob_view = phone_checks(shown_to_bob)
    # Each view is consistent with itself: neither phone alone notices anything.
    assert alice_view.size == bob_view.size == 8
    assert alice_view.root_hash != bob_view.root_hash
    note = cosign(
        alice_verifier.last_checkpoint_text or "", owner_key_id=ALICE_ID, signing_key=ALICE, now=NOW
    )
    # Bob's phone sees Alice's cosignature: same size, another root.
    with pytest.raises(SplitView) as info:
        check_all(bob_view, note, shown_to_bob)
    assert str(info.value) == (
        f"owner {ALICE_ID} cosigned a checkpoint of size 8 with another root hash than this phone "
        "verified: the device shows different logs to different owners"
    )


def test_a_fork_that_grew_apart_is_detected() -> None:
    shown_to_alice, shown_to_bob = make_log(8, "alice"), make_log(13, "bob")
    alice_verifier, _ = phone_checks(shown_to_alice)
    _, bob_view = phone_checks(shown_to_bob)
    note = cosign(
        alice_verifier.last_checkpoint_text or "", owner_key_id=ALICE_ID, signing_key=ALICE, now=NOW
    )
    # The device's best attempt: the consistency proof of Bob's log; it does not lead to Alice's.
    with pytest.raises(SplitView, match=r"is not consistent with the checkpoint of size 13"):
        check_all(bob_view, note, shown_to_bob)
    # Or no proof at all.
    other = open_cosigned(note, open_verifier(), OWNERS)[0]
    with pytest.raises(SplitView, match=r"the device cannot prove it consistent"):
        check_cosigned(bob_view, other, None)


def test_one_log_seen_by_two_phones_passes() -> None:
    log = make_log(8, "one")
    alice_verifier, _ = phone_checks(log)
    note = cosign(
        alice_verifier.last_checkpoint_text or "", owner_key_id=ALICE_ID, signing_key=ALICE, now=NOW
    )
    for i in range(5):
        log.append("request.pending", request_id=f"more-{i}")
    _, bob_view = phone_checks(log)
    check_all(bob_view, note, log)  # Alice's smaller checkpoint is a prefix of Bob's
    assert [c.owner_key_id for c in open_cosigned(note, open_verifier(), OWNERS)] == [ALICE_ID]


def test_the_device_book_keeps_each_owners_latest_cosignature() -> None:
    log = make_log(8, "one")
    book = CosignatureBook(sqlite3.connect(":memory:", check_same_thread=False), log=log)
    first = log.checkpoint()
    alice_note = cosign(first, owner_key_id=ALICE_ID, signing_key=ALICE, now=NOW)
    record = book.record(alice_note, owner_key_id=ALICE_ID, owner_key=ALICE.public_key(), now=NOW)
    assert (record.size, record.time) == (8, NOW)
    bob_note = cosign(first, owner_key_id=BOB_ID, signing_key=BOB, now=NOW + 1)
    book.record(bob_note, owner_key_id=BOB_ID, owner_key=BOB.public_key(), now=NOW + 1)
    # One note per checkpoint, carrying both owners' lines.
    (alice_latest, bob_latest) = book.latest({ALICE_ID, BOB_ID})
    assert alice_latest.note == bob_latest.note
    assert {c.owner_key_id for c in open_cosigned(alice_latest.note, open_verifier(), OWNERS)} == {
        ALICE_ID,
        BOB_ID,
    }
    # The checkpoint served now carries them too; a removed owner's line is left out.
    served = book.attach(log.checkpoint(), {ALICE_ID})
    assert [c.owner_key_id for c in open_cosigned(served, open_verifier(), OWNERS)] == [ALICE_ID]
    assert open_checkpoint(served, open_verifier()).size == 8
    assert [r.owner_key_id for r in book.latest({BOB_ID})] == [BOB_ID]

    # A checkpoint the device never signed for its tree, someone else's line, an older one.
    other = make_log(8, "other")
    with pytest.raises(CheckpointError, match=r"never signed a tree of size 8 with that root"):
        book.record(
            cosign(other.checkpoint(), owner_key_id=ALICE_ID, signing_key=ALICE, now=NOW + 5),
            owner_key_id=ALICE_ID,
            owner_key=ALICE.public_key(),
            now=NOW + 5,
        )
    with pytest.raises(CosignatureError, match=r"no cosignature by doorward-owner/"):
        book.record(bob_note, owner_key_id=ALICE_ID, owner_key=ALICE.public_key(), now=NOW + 5)
    with pytest.raises(CosignatureError, match=r"older$"):
        book.record(
            cosign(first, owner_key_id=ALICE_ID, signing_key=ALICE, now=NOW - 10),
            owner_key_id=ALICE_ID,
            owner_key=ALICE.public_key(),
            now=NOW + 5,
        )
    with pytest.raises(CosignatureError, match=r"ahead of the device's clock"):
        book.record(
            cosign(first, owner_key_id=ALICE_ID, signing_key=ALICE, now=NOW + 3600),
            owner_key_id=ALICE_ID,
            owner_key=ALICE.public_key(),
            now=NOW,
        )
    log.append("request.pending", request_id="later")
    newer = cosign(log.checkpoint(), owner_key_id=ALICE_ID, signing_key=ALICE, now=NOW + 9)
    assert (
        book.record(newer, owner_key_id=ALICE_ID, owner_key=ALICE.public_key(), now=NOW).size == 9
    )
    assert [(r.owner_key_id, r.size) for r in book.latest({ALICE_ID, BOB_ID})] == [
        (ALICE_ID, 9),
        (BOB_ID, 8),
    ]
