"""RFC 9162 §2.1 Merkle tree hashing and proofs (SHA-256), independent of storage.

Stored trees are read through a ``NodeSource``: ``nodes(level, index)`` returns the hash of the
perfect subtree of ``2**level`` leaves that starts at leaf ``index * 2**level``. Every range the
RFC's PATH and SUBPROOF recursions ask for starts on a multiple of a power of two at least as
large as the range, so it splits left to right into perfect subtrees of decreasing size; its hash
is the right fold of theirs. A proof in a tree of n leaves therefore needs O(log² n) stored
nodes at worst, and appending a leaf adds at most log₂ n + 1 of them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence

from consent._audit_errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_PROOF_HASHES",
    "NodeSource",
    "consistency_proof",
    "decode_proof",
    "encode_proof",
    "extend_frontier",
    "fold_frontier",
    "frontier_positions",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "range_hash",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
# MTH({}) = SHA-256() (RFC 9162 §2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()
# A tree of fewer than 2**63 leaves has proofs of at most 63 hashes (consistency: 2 * 63 bound is
# never reached because SUBPROOF adds one hash per level). Longer lists are refused unread.
MAX_PROOF_HASHES = 64

NodeSource = Callable[[int, int], bytes]
"""``nodes(level, index)``: hash of the perfect subtree covering leaves
``[index * 2**level, (index + 1) * 2**level)``."""


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def range_hash(start: int, end: int, nodes: NodeSource) -> bytes:
    """MTH of leaves ``[start, end)``; ``start`` must be aligned as described in the module doc."""
    if end <= start:
        if end == start == 0:
            return EMPTY_ROOT
        raise ValueError(f"range must be non-empty, got [{start}, {end})")
    hashes = []
    position = start
    while position < end:
        level = (end - position).bit_length() - 1
        if position % (1 << level):
            raise ValueError(f"range [{start}, {end}) is not aligned on perfect subtrees")
        hashes.append(nodes(level, position >> level))
        position += 1 << level
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = node_hash(left, root)
    return root


def inclusion_proof(index: int, size: int, nodes: NodeSource) -> list[bytes]:
    """PATH(index, D[size]) (RFC 9162 §2.1.3.1), the leaf's sibling first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index must be in [0, {size}), got {index}")
    path = []
    start, n, m = 0, size, index
    while n > 1:
        k = _split(n)
        if m < k:
            path.append(range_hash(start + k, start + n, nodes))
            n = k
        else:
            path.append(range_hash(start, start + k, nodes))
            start, m, n = start + k, m - k, n - k
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, nodes: NodeSource) -> list[bytes]:
    """PROOF(old_size, D[new_size]) (RFC 9162 §2.1.4.1); empty when old_size is 0 or new_size."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"sizes must satisfy 0 <= old <= new, got {old_size} and {new_size}")
    if old_size in (0, new_size):
        return []
    path = []
    start, m, n, whole = 0, old_size, new_size, True
    while m != n:
        k = _split(n)
        if m <= k:
            path.append(range_hash(start + k, start + n, nodes))
            n = k
        else:
            path.append(range_hash(start, start + k, nodes))
            start, m, n, whole = start + k, m - k, n - k, False
    if not whole:
        path.append(range_hash(start, start + n, nodes))
    path.reverse()
    return path


def verify_inclusion(
    leaf_hash_: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof with the RFC 9162 §2.1.3.2 algorithm; raise ProofError if it fails."""
    _check_hashes(proof, leaf_hash_, root)
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not inside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf_hash_
    for p in proof:
        if sn == 0:
            raise ProofError(f"inclusion proof for leaf {index} of {size} is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"inclusion proof for leaf {index} of {size} is too short")
    if not hmac.compare_digest(r, root):
        raise ProofError(f"inclusion proof for leaf {index} of {size} does not lead to the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check a consistency proof with the RFC 9162 §2.1.4.2 algorithm; raise ProofError if it fails."""
    _check_hashes(proof, old_root, new_root)
    if not 0 <= old_size <= new_size:
        raise ProofError(f"tree size went from {old_size} down to {new_size}")
    if old_size in (0, new_size):
        # Every tree extends the empty tree; a tree only extends itself with an identical root.
        if proof:
            raise ProofError(f"consistency proof from {old_size} to {new_size} must be empty")
        if old_size and not hmac.compare_digest(old_root, new_root):
            raise ProofError(f"two different roots for the same tree size {old_size}")
        return
    if not proof:
        raise ProofError(f"consistency proof from {old_size} to {new_size} is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof from {old_size} to {new_size} is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"consistency proof from {old_size} to {new_size} is too short")
    if not hmac.compare_digest(fr, old_root):
        raise ProofError(f"consistency proof from {old_size} to {new_size} misses the old root")
    if not hmac.compare_digest(sr, new_root):
        raise ProofError(f"consistency proof from {old_size} to {new_size} misses the new root")


def frontier_positions(size: int) -> list[tuple[int, int]]:
    """(level, index) of the perfect subtrees that make up ``[0, size)``, largest first."""
    positions = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            positions.append((level, start >> level))
            start += 1 << level
    return positions


def extend_frontier(
    frontier: list[bytes], size: int, new_leaf_hash: bytes
) -> list[tuple[int, int, bytes]]:
    """Append a leaf to the frontier of a tree of ``size`` leaves, in place.

    Returns every perfect subtree the new leaf completes as (level, index, hash), the leaf first.
    """
    created = [(0, size, new_leaf_hash)]
    level, index, current = 0, size, new_leaf_hash
    while index & 1:
        current = node_hash(frontier.pop(), current)
        level, index = level + 1, index >> 1
        created.append((level, index, current))
    frontier.append(current)
    return created


def fold_frontier(frontier: Sequence[bytes]) -> bytes:
    """Root hash of the tree whose frontier (largest subtree first) is given."""
    if not frontier:
        return EMPTY_ROOT
    root = frontier[-1]
    for left in reversed(frontier[:-1]):
        root = node_hash(left, root)
    return root


def root_from_leaf_hashes(hashes: Iterable[bytes]) -> bytes:
    """MTH over the given leaf hashes, in O(n) time and O(log n) memory."""
    frontier: list[bytes] = []
    for size, h in enumerate(hashes):
        extend_frontier(frontier, size, h)
    return fold_frontier(frontier)


def encode_proof(proof: Sequence[bytes]) -> list[str]:
    """A proof as a JSON list of standard base64 strings."""
    return [base64.b64encode(h).decode("ascii") for h in proof]


def decode_proof(items: object) -> list[bytes]:
    """Parse a proof encoded by ``encode_proof``; raise ProofError when it is malformed."""
    if not isinstance(items, list):
        raise ProofError(f"proof must be a list of base64 hashes, got {type(items).__name__}")
    if len(items) > MAX_PROOF_HASHES:
        raise ProofError(f"proof must hold at most {MAX_PROOF_HASHES} hashes, got {len(items)}")
    proof = []
    for position, item in enumerate(items):
        try:
            if not isinstance(item, str):
                raise ValueError
            raw = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProofError(f"proof hash {position} is not base64") from exc
        if len(raw) != HASH_SIZE or base64.b64encode(raw).decode("ascii") != item:
            raise ProofError(f"proof hash {position} must be {HASH_SIZE} bytes in canonical base64")
        proof.append(raw)
    return proof


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2): where MTH splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hashes(proof: Sequence[bytes], *values: bytes) -> None:
    if len(proof) > MAX_PROOF_HASHES:
        raise ProofError(f"proof must hold at most {MAX_PROOF_HASHES} hashes, got {len(proof)}")
    for value in (*values, *proof):
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise ProofError(f"every hash must be {HASH_SIZE} bytes")
