"""Audit-log figures for ``bench/consent.py``.

    audit_append_per_s()            appends per second to a file-backed log (WAL, synchronous=FULL)
    checkpoint_per_s()              signed checkpoints per second
    with large_log() as log:        a log of 10**6 entries, bulk-loaded
        inclusion_proof_bytes_1e6(log)  bytes of one inclusion proof (32-byte hashes)
        inclusion_proof_us_1e6(log)     microseconds to generate one inclusion proof
    measure_all()                   all four, as a dict keyed like the benchmark JSON

The large log is bulk-loaded (leaves and every perfect-subtree node written with executemany in
one transaction), because a million individually durable appends would measure the disk, not
the tree; proofs are then read through ``AuditLog`` exactly as the device serves them.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent import _merkle
from consent.audit import AuditLog, audit_origin

__all__ = [
    "audit_append_per_s",
    "checkpoint_per_s",
    "inclusion_proof_bytes_1e6",
    "inclusion_proof_us_1e6",
    "large_log",
    "measure_all",
]

_KEY = Ed25519PrivateKey.generate()


def _log(db: Path | sqlite3.Connection) -> AuditLog:
    return AuditLog(db, signer=_KEY, origin=audit_origin(_KEY.public_key()))


def audit_append_per_s(n: int = 2000) -> float:
    """Durable appends per second (each its own transaction, as the device writes them)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = _log(Path(tmp) / "audit.db")
        start = time.perf_counter()
        for i in range(n):
            log.append(
                "request.received",
                request_id=f"req-{i:07d}",
                requester="Nf8p0z2v8n9vJ4m1QyM2bq3c5n7x9zA1bC3dE5fG7hI",
                category="package_theft",
            )
        elapsed = time.perf_counter() - start
        log.close()
    return n / elapsed


def checkpoint_per_s(n: int = 500, entries: int = 1000) -> float:
    """Signed checkpoints per second over a log of ``entries`` entries."""
    log = _log(sqlite3.connect(":memory:", isolation_level=None))
    for i in range(entries):
        log.append("request.pending", request_id=f"req-{i:07d}")
    start = time.perf_counter()
    for _ in range(n):
        log.checkpoint()
    return n / (time.perf_counter() - start)


@contextmanager
def large_log(entries: int = 10**6) -> Iterator[AuditLog]:
    """A file-backed log of ``entries`` request entries, deleted afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "audit.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        log = _log(db)
        _bulk_load(db, entries)
        try:
            yield log
        finally:
            db.close()


def inclusion_proof_bytes_1e6(log: AuditLog, samples: int = 1000) -> int:
    """Mean size in bytes of an inclusion proof (its hashes) at the log's size."""
    size = log.size
    rng = random.Random(1)
    total = sum(32 * len(log.inclusion_proof(rng.randrange(size), size)) for _ in range(samples))
    return round(total / samples)


def inclusion_proof_us_1e6(log: AuditLog, samples: int = 2000) -> float:
    """Mean microseconds to generate one inclusion proof at the log's size."""
    size = log.size
    rng = random.Random(2)
    indices = [rng.randrange(size) for _ in range(samples)]
    start = time.perf_counter()
    for index in indices:
        log.inclusion_proof(index, size)
    return (time.perf_counter() - start) / samples * 1e6


def measure_all(
    entries: int = 10**6, appends: int = 2000, checkpoints: int = 500
) -> dict[str, float]:
    """Every audit figure, keyed as in the consent benchmark's JSON."""
    figures = {
        "audit_append_per_s": audit_append_per_s(appends),
        "checkpoint_per_s": checkpoint_per_s(checkpoints),
    }
    with large_log(entries) as log:
        # The figures mean nothing unless the proofs are right: check one against the root.
        index = entries // 3
        proof = log.inclusion_proof(index, entries)
        leaf_hash = log.entries(index, index + 1)[0].leaf_hash
        _merkle.verify_inclusion(leaf_hash, index, entries, proof, log.root())
        figures["inclusion_proof_bytes_1e6"] = inclusion_proof_bytes_1e6(log)
        figures["inclusion_proof_us_1e6"] = inclusion_proof_us_1e6(log)
    return figures


def _bulk_load(db: sqlite3.Connection, entries: int, batch: int = 50_000) -> None:
    frontier: list[bytes] = []
    db.execute("BEGIN")
    for first in range(0, entries, batch):
        leaves = []
        nodes: list[tuple[int, int, bytes]] = []
        for index in range(first, min(first + batch, entries)):
            # Canonical JSON by construction: keys sorted, no spaces.
            leaf = (
                b'{"category":"package_theft","index":%d,"kind":"request.received",'
                b'"request_id":"req-%07d","time":"2026-11-26T10:00:00Z"}' % (index, index)
            )
            leaves.append((index, leaf))
            nodes += _merkle.extend_frontier(frontier, index, _merkle.leaf_hash(leaf))
        db.executemany("INSERT INTO audit_leaves (idx, leaf) VALUES (?, ?)", leaves)
        db.executemany("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
    db.execute("COMMIT")


if __name__ == "__main__":
    import json

    print(json.dumps(measure_all()))
