"""Device-side audit log: entries, the key-material rule, transactions, proofs, checkpoints."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent import _merkle
from consent._audit_errors import AuditEntryRejected, AuditError
from consent._note import NoteVerifier, open_checkpoint
from consent.audit import ENTRY_KINDS, AuditLog, audit_origin
from crypto.keys import device_id

T0 = 1_790_000_000  # 2026-09-21T14:13:20Z


class FakeClock:
    def __init__(self, now_s: float = T0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32)


@pytest.fixture
def db() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", isolation_level=None)


def make_log(
    db: sqlite3.Connection | Path, key: Ed25519PrivateKey, clock: FakeClock | None = None
) -> AuditLog:
    return AuditLog(
        db, signer=key, origin=audit_origin(key.public_key()), clock=clock or FakeClock()
    )


def test_origin_is_doorward_device_id(key: Ed25519PrivateKey) -> None:
    assert audit_origin(key.public_key()) == f"doorward/{device_id(key.public_key())}"


def test_append_writes_canonical_leaves(db: sqlite3.Connection, key: Ed25519PrivateKey) -> None:
    clock = FakeClock()
    log = make_log(db, key, clock)
    first = log.append("request.received", request_id="r1", category="theft", window_s=3600)
    clock.now_s += 61.9
    second = log.append("request.pending", request_id="r1")
    assert first.index == 0
    assert second.index == 1
    assert first.leaf == (
        b'{"category":"theft","index":0,"kind":"request.received","request_id":"r1",'
        b'"time":"2026-09-21T14:13:20Z","window_s":3600}'
    )
    assert second.body() == {
        "index": 1,
        "kind": "request.pending",
        "request_id": "r1",
        "time": "2026-09-21T14:14:21Z",
    }
    assert first.leaf_hash == _merkle.leaf_hash(first.leaf)
    assert log.size == 2
    assert log.entries() == [first, second]
    assert log.entries(1, 2) == [second]
    assert log.root() == _merkle.root_from_leaf_hashes([first.leaf_hash, second.leaf_hash])


def test_every_listed_kind_is_accepted(db: sqlite3.Connection, key: Ed25519PrivateKey) -> None:
    log = make_log(db, key)
    for kind in sorted(ENTRY_KINDS):
        assert log.append(kind, note_id="n").body()["kind"] == kind
    assert log.size == len(ENTRY_KINDS) == 26


@pytest.mark.parametrize(
    ("kind", "fields", "message"),
    [
        (
            "request.exploded",
            {},
            "unknown audit entry kind 'request.exploded'; use one of consent.audit.ENTRY_KINDS",
        ),
        ("request.pending", {"index": 4}, "audit field 'index' is set by the log itself"),
        (
            "request.pending",
            {"Request": "x"},
            "audit field name 'Request' must be lowercase snake case",
        ),
        (
            "request.pending",
            {"token": "eyJhbGciOiJFZDI1NTE5In0.eyJ"},
            "audit field 'token' looks like key material (27 characters under a key/secret/token "
            "name); log its id or hash instead",
        ),
        (
            "owner.added",
            {"owner": {"signing_key": "MCowBQYDK2VwAyEAx1y2"}},
            "audit field 'owner.signing_key' looks like key material (20 characters under a "
            "key/secret/token name); log its id or hash instead",
        ),
        (
            "pairing.failed",
            {"setup_codes": ["12345678", "this-is-a-long-code-value"]},
            "audit field 'setup_codes' looks like key material (25 characters under a "
            "key/secret/token name); log its id or hash instead",
        ),
        (
            "request.declined",
            {"reason": "oops AGE-SECRET-KEY-1QQQQ"},
            "audit field 'reason' holds a private key; never log keys",
        ),
        (
            "request.declined",
            {"reason": "-----BEGIN PRIVATE KEY-----"},
            "audit field 'reason' holds a private key; never log keys",
        ),
        (
            "release.created",
            {"manifest_sha256": b"\x00" * 32},
            "audit field 'manifest_sha256' must be a JSON string, integer, boolean, null, list or "
            "object, got bytes (write hashes as hex)",
        ),
        (
            "release.created",
            {"size": 1.5},
            "audit field 'size' must be a JSON string, integer, boolean, null, list or object, "
            "got float (write hashes as hex)",
        ),
        (
            "request.declined",
            {"reason": "x" * 1025},
            "audit field 'reason' holds 1025 characters; the limit is 1024",
        ),
        (
            "request.declined",
            {"reasons": ["x" * 1000] * 5},
            "audit entry request.declined is 5094 bytes; the limit is 4096 (entries hold ids, "
            "hashes and reasons, not content)",
        ),
        (
            "request.declined",
            {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}},
            "audit field 'a.b.c.d.e.f' nests deeper than 4 levels",
        ),
    ],
)
def test_refused_entries(
    db: sqlite3.Connection,
    key: Ed25519PrivateKey,
    kind: str,
    fields: dict[str, object],
    message: str,
) -> None:
    log = make_log(db, key)
    with pytest.raises(AuditEntryRejected) as info:
        log.append(kind, **fields)
    assert str(info.value) == message
    assert log.size == 0


def test_ids_and_hashes_under_key_names_are_allowed(
    db: sqlite3.Connection, key: Ed25519PrivateKey
) -> None:
    log = make_log(db, key)
    long_id = "Nf8p0z2v8n9vJ4m1QyM2bq3c5n7x9zA1bC3dE5fG7hI"
    entry = log.append(
        "owner.added",
        owner_key_id=long_id,
        token_sha256="ab" * 32,
        recipient_kind="hybrid",
        key_fingerprint="cd" * 32,
        token="short-ref",
    )
    assert entry.body()["owner_key_id"] == long_id


def test_append_is_all_or_nothing(db: sqlite3.Connection, key: Ed25519PrivateKey) -> None:
    log = make_log(db, key)
    log.append("request.pending", request_id="a")
    root = log.root()
    # A damaged node table makes the second half of the append fail after the leaf is written.
    db.execute("INSERT INTO audit_nodes (level, idx, hash) VALUES (0, 1, x'00')")
    with pytest.raises(sqlite3.IntegrityError):
        log.append("request.pending", request_id="b")
    assert log.size == 1
    assert log.root() == root
    assert not db.in_transaction


def test_append_joins_the_callers_transaction(
    db: sqlite3.Connection, key: Ed25519PrivateKey
) -> None:
    log = make_log(db, key)
    log.append("request.pending", request_id="kept")
    db.execute("BEGIN")
    log.append("request.pending", request_id="rolled back")
    db.execute("ROLLBACK")
    assert log.size == 1
    assert log.append("request.pending", request_id="next").index == 1
    db.execute("BEGIN")
    log.append("request.pending", request_id="committed")
    db.execute("COMMIT")
    assert [e.body()["request_id"] for e in log.entries()] == ["kept", "next", "committed"]


def test_rows_are_append_only(db: sqlite3.Connection, key: Ed25519PrivateKey) -> None:
    log = make_log(db, key)
    log.append("request.pending", request_id="a")
    with pytest.raises(sqlite3.IntegrityError, match=r"^the audit log is append-only$"):
        db.execute("UPDATE audit_leaves SET leaf = x'00'")
    with pytest.raises(sqlite3.IntegrityError, match=r"^the audit log is append-only$"):
        db.execute("DELETE FROM audit_nodes")


def test_checkpoint_is_signed_over_its_body(db: sqlite3.Connection, key: Ed25519PrivateKey) -> None:
    log = make_log(db, key)
    empty = open_checkpoint(log.checkpoint(), NoteVerifier.parse(log.verifier_key))
    assert (empty.size, empty.root_hash) == (0, _merkle.EMPTY_ROOT)
    for i in range(5):
        log.append("clip.deleted", clip_id=f"c{i}")
    note = log.checkpoint()
    body, signature_line = note.split("\n\n")
    origin = audit_origin(key.public_key())
    checkpoint = open_checkpoint(note, NoteVerifier.parse(log.verifier_key))
    assert (checkpoint.origin, checkpoint.size, checkpoint.root_hash) == (origin, 5, log.root())
    assert body + "\n" == checkpoint.text()
    assert signature_line.startswith(f"\u2014 {origin} ")
    assert log.verifier_key.startswith(f"{origin}+")


def test_proofs_for_every_entry_and_size(db: sqlite3.Connection, key: Ed25519PrivateKey) -> None:
    log = make_log(db, key)
    roots = [log.root()]
    for i in range(40):
        log.append("release.downloaded", release_id=f"r{i}", download=i)
        roots.append(log.root())
    entries = log.entries()
    for size in range(1, 41):
        assert log.root(size) == roots[size]
        for index in range(size):
            proof = log.inclusion_proof(index, size)
            _merkle.verify_inclusion(entries[index].leaf_hash, index, size, proof, roots[size])
        for old in range(size + 1):
            proof = log.consistency_proof(old, size)
            _merkle.verify_consistency(old, size, roots[old], roots[size], proof)


def test_consistency_holds_across_1000_appends(
    db: sqlite3.Connection, key: Ed25519PrivateKey
) -> None:
    log = make_log(db, key)
    roots = [log.root()]
    leaf_hashes = []
    for i in range(1000):
        entry = log.append("request.received", request_id=f"req-{i:04d}", category="other")
        leaf_hashes.append(entry.leaf_hash)
        roots.append(log.root())
    assert log.root() == _merkle.root_from_leaf_hashes(leaf_hashes)
    rng = random.Random(4)
    for _ in range(400):
        old, new = sorted(rng.sample(range(1001), 2))
        proof = log.consistency_proof(old, new)
        _merkle.verify_consistency(old, new, roots[old], roots[new], proof)
        # The tree at each past size is exactly what it was then.
        assert log.root(old) == roots[old]


def test_log_survives_reopening(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "doorward.db"
    log = make_log(path, key)
    for i in range(7):
        log.append("live.started", session_id=f"s{i}")
    root7 = log.root()
    log.close()
    reopened = make_log(path, key)
    assert reopened.size == 7
    assert reopened.root() == root7
    reopened.append("live.ended", session_id="s6")
    hashes = [e.leaf_hash for e in reopened.entries()]
    assert reopened.root() == _merkle.root_from_leaf_hashes(hashes)
    _merkle.verify_consistency(7, 8, root7, reopened.root(), reopened.consistency_proof(7, 8))
    reopened.close()


def test_concurrent_appends_are_serialised(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    log = make_log(tmp_path / "audit.db", key)

    def worker(n: int) -> None:
        for i in range(25):
            log.append("request.pending", request_id=f"w{n}-{i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = log.entries()
    assert [e.index for e in entries] == list(range(100))
    assert len({e.body()["request_id"] for e in entries}) == 100
    assert log.root() == _merkle.root_from_leaf_hashes(e.leaf_hash for e in entries)
    log.close()


def test_bad_ranges_are_refused(db: sqlite3.Connection, key: Ed25519PrivateKey) -> None:
    log = make_log(db, key)
    log.append("request.pending", request_id="a")
    with pytest.raises(ValueError, match=r"^tree size must be in \[0, 1\], got 2$"):
        log.inclusion_proof(0, 2)
    with pytest.raises(ValueError, match=r"^leaf index must be in \[0, 1\), got 1$"):
        log.inclusion_proof(1, 1)
    with pytest.raises(ValueError, match=r"^tree size must be in \[0, 1\], got 3$"):
        log.consistency_proof(0, 3)
    with pytest.raises(ValueError, match=r"^entry range must lie within \[0, 1\], got \[0, 2\)$"):
        log.entries(0, 2)
    with pytest.raises(ValueError, match=r"^tree size must be in \[0, 1\], got 5$"):
        log.root(5)


def test_missing_nodes_are_reported(db: sqlite3.Connection, key: Ed25519PrivateKey) -> None:
    log = make_log(db, key)
    log.append("request.pending", request_id="a")
    log.append("request.pending", request_id="b")
    db.execute("DROP TRIGGER audit_nodes_append_only_delete")
    db.execute("DELETE FROM audit_nodes WHERE level = 1")
    with pytest.raises(
        AuditError,
        match=r"^audit log storage lacks node level=1 index=0: the database was altered or damaged$",
    ):
        log.checkpoint()


def test_repr_and_leaf_json_are_free_of_keys(
    db: sqlite3.Connection, key: Ed25519PrivateKey
) -> None:
    log = make_log(db, key)
    entry = log.append("owner.added", owner_key_id="k1")
    private = key.private_bytes_raw().hex()
    assert private not in repr(log)
    assert private not in entry.leaf.hex()
    assert json.loads(entry.leaf)["owner_key_id"] == "k1"
