"""RFC 9162 hashing and proofs: published CT vectors, a brute-force reference, and mutations."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent import _merkle as m
from consent._audit_errors import ProofError

VECTORS = json.loads((Path(__file__).parent / "data" / "rfc9162_vectors.json").read_text())
LEAVES = [bytes.fromhex(x) for x in VECTORS["leaves"]]
ROOTS = [bytes.fromhex(x) for x in VECTORS["roots"]]


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def stored_nodes(leaves: list[bytes]) -> m.NodeSource:
    """Node source built the way the audit log stores it: frontier extension, leaf by leaf."""
    nodes: dict[tuple[int, int], bytes] = {}
    frontier: list[bytes] = []
    for size, leaf in enumerate(leaves):
        for level, index, value in m.extend_frontier(frontier, size, m.leaf_hash(leaf)):
            nodes[level, index] = value
    return lambda level, index: nodes[level, index]


# --- brute-force reference, straight from the recursive definitions in RFC 9162 §2.1 ---


def ref_mth(d: tuple[bytes, ...]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(i: int, d: tuple[bytes, ...]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if i < k:
        return [*ref_path(i, d[:k]), ref_mth(d[k:])]
    return [*ref_path(i - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(i: int, d: tuple[bytes, ...], b: bool) -> list[bytes]:
    n = len(d)
    if i == n:
        return [] if b else [ref_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if i <= k:
        return [*ref_subproof(i, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(i - k, d[k:], False), ref_mth(d[:k])]


REF_LEAVES = tuple(f"leaf {i}".encode() for i in range(64))


@cache
def ref_root(size: int) -> bytes:
    return ref_mth(REF_LEAVES[:size])


REF_NODES = stored_nodes(list(REF_LEAVES))


# --- published vectors ---


def test_hashes_match_published_values() -> None:
    assert h(VECTORS["hashes"]["empty_root"]) == m.EMPTY_ROOT
    assert m.leaf_hash(b"") == h(VECTORS["hashes"]["empty_leaf"])
    assert m.leaf_hash(b"L123456") == h(VECTORS["hashes"]["leaf_L123456"])
    assert m.node_hash(b"N123", b"N456") == h(VECTORS["hashes"]["node_N123_N456"])


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_published_values(size: int) -> None:
    nodes = stored_nodes(LEAVES)
    assert m.range_hash(0, size, nodes) == ROOTS[size - 1]
    assert m.root_from_leaf_hashes(m.leaf_hash(x) for x in LEAVES[:size]) == ROOTS[size - 1]


def test_empty_tree_root() -> None:
    assert m.range_hash(0, 0, REF_NODES) == m.EMPTY_ROOT
    assert m.root_from_leaf_hashes([]) == m.EMPTY_ROOT


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: f"{c['index']}-{c['size']}")
def test_inclusion_matches_published_proofs(case: dict[str, Any]) -> None:
    index, size = case["index"], case["size"]
    expected = [h(x) for x in case["proof"]]
    assert m.inclusion_proof(index, size, stored_nodes(LEAVES)) == expected
    m.verify_inclusion(m.leaf_hash(LEAVES[index]), index, size, expected, ROOTS[size - 1])


@pytest.mark.parametrize(
    "case", VECTORS["consistency"], ids=lambda c: f"{c['old_size']}-{c['new_size']}"
)
def test_consistency_matches_published_proofs(case: dict[str, Any]) -> None:
    old, new = case["old_size"], case["new_size"]
    expected = [h(x) for x in case["proof"]]
    assert m.consistency_proof(old, new, stored_nodes(LEAVES)) == expected
    m.verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], expected)


# --- brute force over every size 1..64 ---


@pytest.mark.parametrize("size", range(1, 65))
def test_every_inclusion_proof_matches_reference(size: int) -> None:
    root = ref_root(size)
    assert m.range_hash(0, size, REF_NODES) == root
    for index in range(size):
        proof = m.inclusion_proof(index, size, REF_NODES)
        assert proof == ref_path(index, REF_LEAVES[:size])
        leaf = m.leaf_hash(REF_LEAVES[index])
        m.verify_inclusion(leaf, index, size, proof, root)
        for bad in inclusion_mutations(leaf, index, size, proof, root):
            with pytest.raises(ProofError):
                m.verify_inclusion(*bad)


@pytest.mark.parametrize("new", range(1, 65))
def test_every_consistency_proof_matches_reference(new: int) -> None:
    new_root = ref_root(new)
    for old in range(1, new + 1):
        proof = m.consistency_proof(old, new, REF_NODES)
        assert proof == ref_subproof(old, REF_LEAVES[:new], True)
        m.verify_consistency(old, new, ref_root(old), new_root, proof)
        for bad in consistency_mutations(old, new, ref_root(old), new_root, proof):
            with pytest.raises(ProofError):
                m.verify_consistency(*bad)


def inclusion_mutations(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> list[tuple[bytes, int, int, list[bytes], bytes]]:
    # Not "size + 1": the §2.1.3.2 walk can take the same shape in a tree one leaf larger, so the
    # same path verifies there too. The signed checkpoint binds the root to its size.
    other = hashlib.sha256(b"other").digest()
    cases = [
        (other, index, size, proof, root),
        (leaf, index, size, proof, other),
        (leaf, index, size, [*proof, root], root),
        (leaf, index, size, [root, *proof], root),
        (leaf, index, size * 2, proof, root),
        (leaf, index + 1, size, proof, root),
        (leaf, index - 1, size, proof, root),
    ]
    if size > 1:
        cases.append((leaf, index ^ 1, size, proof, root) if index ^ 1 < size else cases[0])
        cases.append((leaf, index, size // 2 or 1, proof, root))
    for position in range(len(proof)):
        flipped = bytearray(proof[position])
        flipped[position % 32] ^= 0x08
        cases.append(
            (leaf, index, size, [*proof[:position], bytes(flipped), *proof[position + 1 :]], root)
        )
        cases.append((leaf, index, size, proof[:position] + proof[position + 1 :], root))
    return cases


def consistency_mutations(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> list[tuple[int, int, bytes, bytes, list[bytes]]]:
    # Not "new + 1", for the reason given in inclusion_mutations.
    other = hashlib.sha256(b"other").digest()
    cases = [
        (old, new, other, new_root, proof),
        (old, new, old_root, other, proof),
        (old, new, old_root, new_root, [*proof, new_root]),
        (old, new, old_root, new_root, [old_root, *proof]),
        (new + 1, new, old_root, new_root, proof),
    ]
    if old != new:
        cases += [
            (old, new, new_root, old_root, proof),
            (old, new, old_root, new_root, []),
            (old, new * 2, old_root, new_root, proof),
            (old - 1, new, old_root, new_root, proof) if old > 1 else cases[0],
            (old + 1, new, old_root, new_root, proof) if old + 1 < new else cases[0],
        ]
    for position in range(len(proof)):
        flipped = bytearray(proof[position])
        flipped[position % 32] ^= 0x10
        cases.append(
            (
                old,
                new,
                old_root,
                new_root,
                [*proof[:position], bytes(flipped), *proof[position + 1 :]],
            )
        )
        cases.append((old, new, old_root, new_root, proof[:position] + proof[position + 1 :]))
    return cases


# --- property tests on larger random trees ---


@settings(max_examples=40, deadline=None)
@given(
    leaves=st.lists(st.binary(max_size=8), min_size=1, max_size=300),
    data=st.data(),
)
def test_random_trees_match_reference(leaves: list[bytes], data: st.DataObject) -> None:
    nodes = stored_nodes(leaves)
    size = data.draw(st.integers(1, len(leaves)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(1, size), label="old")
    d = tuple(leaves[:size])
    root = ref_mth(d)
    assert m.range_hash(0, size, nodes) == root
    inclusion = m.inclusion_proof(index, size, nodes)
    assert inclusion == ref_path(index, d)
    m.verify_inclusion(m.leaf_hash(leaves[index]), index, size, inclusion, root)
    consistency = m.consistency_proof(old, size, nodes)
    assert consistency == ref_subproof(old, d, True)
    m.verify_consistency(old, size, ref_mth(d[:old]), root, consistency)
    if inclusion:
        position = data.draw(st.integers(0, len(inclusion) - 1), label="position")
        bit = data.draw(st.integers(0, 255), label="bit")
        flipped = bytearray(inclusion[position])
        flipped[bit // 8] ^= 1 << (bit % 8)
        inclusion[position] = bytes(flipped)
        with pytest.raises(ProofError, match="does not lead to the root"):
            m.verify_inclusion(m.leaf_hash(leaves[index]), index, size, inclusion, root)


# --- exact errors ---


def test_inclusion_errors_are_specific() -> None:
    leaf = m.leaf_hash(REF_LEAVES[0])
    root, proof = ref_root(8), m.inclusion_proof(0, 8, REF_NODES)
    with pytest.raises(ProofError, match=r"^leaf index 8 is not inside a tree of size 8$"):
        m.verify_inclusion(leaf, 8, 8, proof, root)
    with pytest.raises(ProofError, match=r"^inclusion proof for leaf 0 of 8 is too short$"):
        m.verify_inclusion(leaf, 0, 8, proof[:2], root)
    with pytest.raises(ProofError, match=r"^inclusion proof for leaf 0 of 8 is too long$"):
        m.verify_inclusion(leaf, 0, 8, [*proof, root], root)
    with pytest.raises(ProofError, match=r"^every hash must be 32 bytes$"):
        m.verify_inclusion(leaf, 0, 8, [*proof[:2], b"short"], root)
    with pytest.raises(ProofError, match=r"^proof must hold at most 64 hashes, got 65$"):
        m.verify_inclusion(leaf, 0, 8, [root] * 65, root)


def test_consistency_errors_are_specific() -> None:
    r4, r8 = ref_root(4), ref_root(8)
    with pytest.raises(ProofError, match=r"^tree size went from 8 down to 4$"):
        m.verify_consistency(8, 4, r8, r4, [])
    with pytest.raises(ProofError, match=r"^two different roots for the same tree size 4$"):
        m.verify_consistency(4, 4, r4, r8, [])
    with pytest.raises(ProofError, match=r"^consistency proof from 4 to 4 must be empty$"):
        m.verify_consistency(4, 4, r4, r4, [r4])
    with pytest.raises(ProofError, match=r"^consistency proof from 4 to 8 is empty$"):
        m.verify_consistency(4, 8, r4, r8, [])
    proof = m.consistency_proof(4, 8, REF_NODES)
    with pytest.raises(ProofError, match=r"^consistency proof from 4 to 8 misses the new root$"):
        m.verify_consistency(4, 8, r4, r4, proof)
    # Anything extends the empty tree, with an empty proof.
    m.verify_consistency(0, 8, m.EMPTY_ROOT, r8, [])


def test_generation_refuses_impossible_ranges() -> None:
    with pytest.raises(ValueError, match=r"^leaf index must be in \[0, 4\), got 4$"):
        m.inclusion_proof(4, 4, REF_NODES)
    with pytest.raises(ValueError, match=r"^sizes must satisfy 0 <= old <= new, got 5 and 4$"):
        m.consistency_proof(5, 4, REF_NODES)
    with pytest.raises(ValueError, match=r"^range \[1, 3\) is not aligned on perfect subtrees$"):
        m.range_hash(1, 3, REF_NODES)
    assert m.consistency_proof(0, 4, REF_NODES) == []
    assert m.consistency_proof(4, 4, REF_NODES) == []


def test_frontier_positions() -> None:
    assert m.frontier_positions(0) == []
    assert m.frontier_positions(1) == [(0, 0)]
    assert m.frontier_positions(7) == [(2, 0), (1, 2), (0, 6)]
    assert m.frontier_positions(8) == [(3, 0)]
    assert m.frontier_positions(13) == [(3, 0), (2, 2), (0, 12)]


def test_proof_json_round_trip_and_errors() -> None:
    proof = m.inclusion_proof(5, 8, stored_nodes(LEAVES))
    assert m.decode_proof(m.encode_proof(proof)) == proof
    assert m.encode_proof(proof)[0] == "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms="
    with pytest.raises(ProofError, match=r"^proof must be a list of base64 hashes, got str$"):
        m.decode_proof("abc")
    with pytest.raises(ProofError, match=r"^proof hash 1 is not base64$"):
        m.decode_proof([m.encode_proof(proof)[0], "not base64!"])
    with pytest.raises(ProofError, match=r"^proof hash 0 must be 32 bytes in canonical base64$"):
        m.decode_proof(["AAAA"])
    with pytest.raises(ProofError, match=r"^proof must hold at most 64 hashes, got 65$"):
        m.decode_proof(["AAAA"] * 65)
