"""Fuzz what a phone or a requester reads from a device's audit log: signed notes, checkpoints,
verifier keys, and Merkle inclusion and consistency proofs (as JSON, then checked).

Every input either verifies or is refused with ``CheckpointError`` (notes, checkpoints, verifier
keys) or ``ProofError`` (proofs).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from consent import _merkle
from consent._audit_errors import AuditError, CheckpointError, ProofError
from consent._note import Checkpoint, NoteVerifier, open_checkpoint, open_note, sign_checkpoint
from consent.audit_verify import AuditVerifier
from tests.fuzz.kit import (
    bytes_target,
    fuzz_bytes,
    fuzz_settings,
    json_values,
    parse_or_refuse,
    text_target,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.timeout(120)]

ORIGIN = "doorward/abcdefghijklmnop"
DEVICE = Ed25519PrivateKey.from_private_bytes(bytes(range(5, 37)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(6, 38)))
VERIFIER = NoteVerifier(ORIGIN, DEVICE.public_key())

LEAVES = [json.dumps({"index": i, "kind": "request.created"}).encode() for i in range(13)]
LEAF_HASHES = [_merkle.leaf_hash(leaf) for leaf in LEAVES]


# The hash of every contiguous run of leaves (RFC 9162 MTH): any node a proof can honestly hold.
GENUINE_NODES = frozenset(
    _merkle.root_from_leaf_hashes(LEAF_HASHES[a:b])
    for a in range(len(LEAF_HASHES))
    for b in range(a + 1, len(LEAF_HASHES) + 1)
)


def _nodes(level: int, index: int) -> bytes:
    start = index << level
    return _merkle.root_from_leaf_hashes(LEAF_HASHES[start : start + (1 << level)])


def _checkpoint(size: int, *extensions: str) -> Checkpoint:
    root = _merkle.range_hash(0, size, _nodes)
    return Checkpoint(ORIGIN, size, root, extensions)


CHECKPOINTS = [_checkpoint(13), _checkpoint(8, "ext line"), _checkpoint(0)]
NOTES = [sign_checkpoint(c, DEVICE) for c in CHECKPOINTS]
# A note with a second signature by an unknown key (verifiers ignore it).
NOTES.append(NOTES[0] + NOTES[0].splitlines(keepends=True)[-1].replace(ORIGIN, "witness/x"))


@bytes_target([n.encode() for n in NOTES], share=4)
def test_open_checkpoint_bytes(data: bytes) -> None:
    result = parse_or_refuse(
        lambda: open_checkpoint(data, VERIFIER), (CheckpointError,), input_size=len(data)
    )
    if isinstance(result, Checkpoint):
        assert result.origin == ORIGIN
        assert Checkpoint.parse(result.text()) == result


@text_target(NOTES, share=3)
def test_open_note_text(text: str) -> None:
    result = parse_or_refuse(
        lambda: open_note(text, VERIFIER), (CheckpointError,), input_size=len(text)
    )
    if isinstance(result, str):
        assert text.startswith(result)


@text_target([c.text() for c in CHECKPOINTS], share=3)
def test_checkpoint_body(text: str) -> None:
    result = parse_or_refuse(lambda: Checkpoint.parse(text), (CheckpointError,))
    if isinstance(result, Checkpoint):
        assert result.text() == text


@text_target([str(VERIFIER), str(NoteVerifier("witness/x", OTHER.public_key()))], share=3)
def test_verifier_key(text: str) -> None:
    result = parse_or_refuse(lambda: NoteVerifier.parse(text), (CheckpointError,))
    if isinstance(result, NoteVerifier):
        assert str(result) == text


# -- proofs -------------------------------------------------------------------------------------

INCLUSION = [
    (index, size, _merkle.encode_proof(_merkle.inclusion_proof(index, size, _nodes)))
    for size in (1, 2, 7, 13)
    for index in {0, size // 2, size - 1}
]
CONSISTENCY = [
    (old, new, _merkle.encode_proof(_merkle.consistency_proof(old, new, _nodes)))
    for old, new in ((1, 13), (4, 8), (5, 13), (8, 13), (13, 13), (0, 7))
]


def _encoded_proofs(valid: list[list[str]]) -> st.SearchStrategy[Any]:
    hashes = st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode())
    return st.one_of(
        st.sampled_from(valid),
        json_values(),
        st.lists(st.one_of(hashes, json_values()), max_size=70),
        st.builds(
            lambda proof, cut, extra: proof[:cut] + extra,
            st.sampled_from(valid),
            st.integers(min_value=0, max_value=20),
            st.lists(hashes, max_size=3),
        ),
    )


_SIZES = st.one_of(
    st.integers(min_value=-2, max_value=20),
    st.integers(min_value=-(2**70), max_value=2**70),
)


@fuzz_settings(share=4)
@given(
    st.sampled_from(INCLUSION),
    _encoded_proofs([p for _, _, p in INCLUSION]),
    st.one_of(st.none(), _SIZES),
    st.one_of(st.none(), _SIZES),
)
def test_inclusion_proof(valid: Any, proof: Any, index: Any, size: Any) -> None:
    good_index, good_size, _ = valid
    index = good_index if index is None else index
    size = good_size if size is None else size
    root = _merkle.range_hash(0, good_size, _nodes)

    def verify() -> None:
        decoded = _merkle.decode_proof(proof)
        _merkle.verify_inclusion(LEAF_HASHES[good_index], index, size, decoded, root)

    result = parse_or_refuse(verify, (ProofError,))
    if result is None:
        # A proof that verifies is made of genuine nodes of the tree (short of a SHA-256
        # collision). Another (index, size) may verify with them against the same root: leaf 0 of
        # 9 takes the sibling h(8..12) where leaf 0 of 13 does, as the signed (size, root) of a
        # checkpoint is what binds a tree; so the oracle is the nodes, not the claimed size.
        assert all(node in GENUINE_NODES for node in _merkle.decode_proof(proof))


@fuzz_settings(share=4)
@given(
    st.sampled_from(CONSISTENCY),
    _encoded_proofs([p for _, _, p in CONSISTENCY]),
    st.one_of(st.none(), _SIZES),
    st.one_of(st.none(), _SIZES),
)
def test_consistency_proof(valid: Any, proof: Any, old: Any, new: Any) -> None:
    good_old, good_new, _ = valid
    old = good_old if old is None else old
    new = good_new if new is None else new
    old_root = _merkle.range_hash(0, good_old, _nodes)
    new_root = _merkle.range_hash(0, good_new, _nodes)

    def verify() -> None:
        decoded = _merkle.decode_proof(proof)
        _merkle.verify_consistency(old, new, old_root, new_root, decoded)

    parse_or_refuse(verify, (ProofError,))


def test_leaf_hashes_are_those_of_the_leaves() -> None:
    # The fixture above hashes real leaves: RFC 9162 leaf hash of the first one.
    assert LEAF_HASHES[0] == hashlib.sha256(b"\x00" + LEAVES[0]).digest()


# -- entries served by a hostile device, under a checkpoint it signed over them ----------------


@fuzz_settings(share=2)
@given(st.lists(fuzz_bytes(LEAVES[:4], raw_max_size=64), min_size=1, max_size=5))
def test_entries_under_a_signed_checkpoint(leaves: list[bytes]) -> None:
    root = _merkle.root_from_leaf_hashes(_merkle.leaf_hash(leaf) for leaf in leaves)
    note = sign_checkpoint(Checkpoint(ORIGIN, len(leaves), root), DEVICE)
    verifier = AuditVerifier(DEVICE.public_key(), ORIGIN)
    result = parse_or_refuse(
        lambda: verifier.verify_entries(leaves, note),
        (AuditError,),
        input_size=sum(map(len, leaves)),
    )
    if isinstance(result, Checkpoint):
        assert [json.loads(leaf)["index"] for leaf in leaves] == list(range(len(leaves)))
