"""An owner's audit of a log of 10^5 entries: paged reads, incremental updates, tampering, state.

Before paging, the phone read ``[0, size)`` in one call, which the device refuses past
``MAX_ENTRIES_PER_READ`` (10,000) entries — and unauthenticated requesters add two entries per
request, so anyone could push an owner's log past what the owner could check.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent._audit_errors import AuditStateCorrupt, EntriesTampered, LogInconsistent
from consent.audit import MAX_ENTRIES_PER_READ, AuditEntry, AuditLog, audit_origin
from consent.audit_verify import FRONTIER_SUFFIX, AuditVerifier

KEY = Ed25519PrivateKey.from_private_bytes(bytes([3]) * 32)
ORIGIN = audit_origin(KEY.public_key())
BIG = 100_000


class Served:
    """The device's answers to an owner, straight from an AuditLog; counts the entries read and
    can alter one entry on the way out (a device that lies about one leaf)."""

    def __init__(self, log: AuditLog, alter: Callable[[AuditEntry], bytes] | None = None) -> None:
        self.log = log
        self.alter = alter
        self.fetched = 0
        self.reads = 0

    def entries(self, start: int, end: int) -> list[bytes]:
        entries = self.log.entries(start, end)  # refuses more than MAX_ENTRIES_PER_READ
        self.fetched += len(entries)
        self.reads += 1
        return [self.alter(e) if self.alter else e.leaf for e in entries]


def audit(verifier: AuditVerifier, served: Served) -> int:
    """What ``doorward owner audit`` does: checkpoint, consistency proof, new entries in pages."""
    old = verifier.last_checkpoint
    size = served.log.size
    proof = served.log.consistency_proof(old.size, size) if old is not None else []
    update = verifier.start_update(served.log.checkpoint(), proof)
    while not update.complete:
        start, end = update.next_page()
        assert end - start <= MAX_ENTRIES_PER_READ
        update.add_entries(served.entries(start, end))
    return verifier.commit(update).size


def build(n: int, tag: str = "r") -> AuditLog:
    log = AuditLog(
        sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False),
        signer=KEY,
        origin=ORIGIN,
        clock=lambda: 1_790_000_000.0,
    )
    log._db.execute("BEGIN")  # one transaction: building 10^5 entries takes seconds, not minutes
    for i in range(n):
        log.append("request.received", request_id=f"{tag}-{i}", category="theft")
    log._db.execute("COMMIT")
    return log


@pytest.fixture(scope="module")
def big_log() -> Iterator[AuditLog]:
    log = build(BIG)
    yield log
    log.close()


@pytest.mark.slow
def test_reading_everything_at_once_is_refused_by_the_device(big_log: AuditLog) -> None:
    # What the phone used to do: one read of [0, size).
    with pytest.raises(ValueError, match=r"read at most 10000 entries at a time"):
        Served(big_log).entries(0, big_log.size)


@pytest.mark.slow
def test_full_audit_pages_and_the_next_reads_only_new_entries(
    big_log: AuditLog, tmp_path: Path
) -> None:
    state = tmp_path / "device.checkpoint"
    served = Served(big_log)
    assert audit(AuditVerifier(KEY.public_key(), ORIGIN, state_path=state), served) == BIG
    assert (served.fetched, served.reads) == (BIG, BIG // MAX_ENTRIES_PER_READ)
    frontier = json.loads(state.with_name(state.name + FRONTIER_SUFFIX).read_text())
    assert (frontier["size"], len(frontier["frontier"])) == (BIG, bin(BIG).count("1"))

    # A new session on the phone: it reloads checkpoint and frontier, and reads only what is new.
    big_log._db.execute("SAVEPOINT grow")
    try:
        for i in range(10):
            big_log.append("request.pending", request_id=f"new-{i}")
        again = Served(big_log)
        verifier = AuditVerifier(KEY.public_key(), ORIGIN, state_path=state)
        assert verifier.verified_size == BIG
        assert audit(verifier, again) == BIG + 10
        assert (again.fetched, again.reads) == (10, 1)
        # Nothing new: nothing read.
        idle = Served(big_log)
        assert audit(AuditVerifier(KEY.public_key(), ORIGIN, state_path=state), idle) == BIG + 10
        assert idle.fetched == 0
    finally:
        big_log._db.execute("ROLLBACK TO grow")
        big_log._db.execute("RELEASE grow")


@pytest.mark.slow
def test_a_tampered_entry_in_a_later_page_is_caught(big_log: AuditLog, tmp_path: Path) -> None:
    target = BIG - 4_321

    def alter(entry: AuditEntry) -> bytes:
        return entry.leaf.replace(b"theft", b"other") if entry.index == target else entry.leaf

    state = tmp_path / "device.checkpoint"
    verifier = AuditVerifier(KEY.public_key(), ORIGIN, state_path=state)
    with pytest.raises(
        EntriesTampered,
        match=rf"^entries 0 to {BIG - 1} do not hash to the checkpoint's root: an entry was altered$",
    ):
        audit(verifier, Served(big_log, alter))
    # Nothing was stored: the next audit starts from scratch.
    assert verifier.last_checkpoint is None
    assert not state.exists()


def test_incremental_audit_catches_rewritten_history(tmp_path: Path) -> None:
    state = tmp_path / "device.checkpoint"
    log = build(25)
    assert audit(AuditVerifier(KEY.public_key(), ORIGIN, state_path=state), Served(log)) == 25
    for i in range(7):
        log.append("request.pending", request_id=f"later-{i}")
    # The device alters one of the new entries in the page it serves.
    served = Served(log, lambda e: e.leaf.replace(b"later-3", b"later-X"))
    verifier = AuditVerifier(KEY.public_key(), ORIGIN, state_path=state)
    with pytest.raises(EntriesTampered, match=r"^entries 25 to 31 do not hash"):
        audit(verifier, served)
    assert verifier.last_checkpoint is not None
    assert verifier.last_checkpoint.size == 25
    # A forked log of the same device is refused by the consistency proof before any read.
    fork = build(32, tag="forked")
    with pytest.raises(LogInconsistent, match=r"forked or was rewritten"):
        audit(verifier, Served(fork))


def test_tampered_frontier_state_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "device.checkpoint"
    frontier_file = state.with_name(state.name + FRONTIER_SUFFIX)
    log = build(13)
    audit(AuditVerifier(KEY.public_key(), ORIGIN, state_path=state), Served(log))
    body = json.loads(frontier_file.read_text())
    first = body["frontier"][0]
    body["frontier"][0] = first[:-2] + ("A=" if first[-2:] != "A=" else "B=")
    frontier_file.write_text(json.dumps(body))
    with pytest.raises(AuditStateCorrupt) as info:
        AuditVerifier(KEY.public_key(), ORIGIN, state_path=state)
    assert str(info.value) == (
        f"{frontier_file} does not match the stored checkpoint of size 13: the profile was "
        "altered outside doorward; delete that file to re-read and re-verify the whole log"
    )
    frontier_file.write_text("not json")
    with pytest.raises(AuditStateCorrupt, match=r"delete that file"):
        AuditVerifier(KEY.public_key(), ORIGIN, state_path=state)
    # Deleting it, as the error says, re-reads the whole log against the stored checkpoint.
    frontier_file.unlink()
    verifier = AuditVerifier(KEY.public_key(), ORIGIN, state_path=state)
    assert verifier.verified_size == 0
    served = Served(log)
    assert audit(verifier, served) == 13
    assert served.fetched == 13
    assert AuditVerifier(KEY.public_key(), ORIGIN, state_path=state).verified_size == 13


def test_a_stale_frontier_is_set_aside_and_the_log_reread(tmp_path: Path) -> None:
    # A crash between writing the frontier and the checkpoint leaves them at different sizes.
    state = tmp_path / "device.checkpoint"
    frontier_file = state.with_name(state.name + FRONTIER_SUFFIX)
    log = build(9)
    audit(AuditVerifier(KEY.public_key(), ORIGIN, state_path=state), Served(log))
    old_frontier = frontier_file.read_bytes()
    log.append("request.pending", request_id="x")
    audit(AuditVerifier(KEY.public_key(), ORIGIN, state_path=state), Served(log))
    frontier_file.write_bytes(old_frontier)  # size 9, checkpoint 10
    verifier = AuditVerifier(KEY.public_key(), ORIGIN, state_path=state)
    assert verifier.verified_size == 0
    served = Served(log)
    assert audit(verifier, served) == 10
    assert served.fetched == 10


def test_a_device_that_serves_nothing_or_too_much_is_caught() -> None:
    log = build(5)
    verifier = AuditVerifier(KEY.public_key(), ORIGIN)
    update = verifier.start_update(log.checkpoint(), [])
    with pytest.raises(EntriesTampered, match=r"served no entries from index 0"):
        update.add_entries([])
    update.add_entries([e.leaf for e in log.entries(0, 3)])
    assert (update.next_index, update.fetched, update.complete) == (3, 3, False)
    with pytest.raises(ValueError, match=r"update is incomplete: 3 of 5 entries read"):
        verifier.commit(update)
    extra = build(6)
    with pytest.raises(EntriesTampered, match=r"past the checkpoint's 5"):
        update.add_entries([e.leaf for e in extra.entries(3, 6)])
