"""Fuzz the signed documents: ``crypto.signed``, clip manifests, release manifests, policy documents.

Byte-level mutants mostly fail the signature; the structured targets re-sign what they perturb
with the expected key, as a hostile device (clip manifests) or a buggy phone (policy documents)
could, so the parsers behind the signature check are reached too.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from consent._policy import DEFAULT_POLICY
from consent._release_manifest import ReleasedSegment, ReleaseManifest, parse_release_manifest
from consent.clip_manifest import ClipManifest
from consent.errors import ClipManifestInvalid, ManifestMismatch, PolicyInvalid
from consent.models import PairedOwner
from consent.policy_doc import SignedPolicy, sign_policy, verify_policy
from crypto import age
from crypto.errors import SignatureError
from crypto.keys import key_id
from crypto.signed import b64url, b64url_decode, canonical_json, verify_document
from tests.fuzz.kit import (
    bytes_target,
    fuzz_settings,
    json_values,
    parse_or_refuse,
    perturbed_json,
    text_target,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.timeout(120)]

DEVICE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OWNER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
OWNERS = [PairedOwner.from_public(OWNER.public_key())]
_SAFE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_HEX64 = re.compile(r"[0-9a-f]{64}")

CLIP = ClipManifest.from_seconds(
    device_id="abcdefghijklmnop",
    clip_id="clip-0001",
    camera="front",
    start_s=1_790_000_000.25,
    end_s=1_790_000_004.25,
    segments=[
        (0, 1_790_000_000.25, 2.0, 1234, "ab" * 32),
        (1, 1_790_000_002.25, 2.0, 99, "cd" * 32),
    ],
)
CLIP_BYTES = CLIP.sign(DEVICE)

HEADER = age.split_header(age.encrypt_bytes([age.X25519Identity.generate().recipient()], b""))[0]
RELEASE = ReleaseManifest(
    request_id="0123456789abcdef0123456789abcdef",
    device_id="abcdefghijklmnop",
    requester_key_id="requester-key-id",
    segments=(
        ReleasedSegment("clip-0001.000000", "clip-0001", 0, HEADER, "ab" * 32),
        ReleasedSegment("clip-0001.000001", "clip-0001", 1, HEADER + b"x", "cd" * 32),
    ),
    clip_manifests={"clip-0001": "ef" * 32},
)
RELEASE_BYTES = RELEASE.to_bytes()
POLICY_TEXT = sign_policy(DEFAULT_POLICY, OWNER, device_id="abcdefghijklmnop", issued_at_s=1)


def _signed(body: Any, key: Ed25519PrivateKey) -> dict[str, Any]:
    """A signed document for any body; bodies canonical JSON refuses get a random signature."""
    try:
        signature = key.sign(canonical_json(body))
    except ValueError:
        signature = bytes(64)
    raw = key.public_key().public_bytes_raw()
    return {"alg": "Ed25519", "key": b64url(raw), "body": body, "sig": b64url(signature)}


# -- crypto.signed ------------------------------------------------------------------------------


@fuzz_settings(share=3)
@given(st.one_of(json_values(), perturbed_json(_signed({"a": 1, "b": [1, "x"]}, DEVICE))))
def test_verify_document_any_json(doc: Any) -> None:
    result = parse_or_refuse(lambda: verify_document(doc, DEVICE.public_key()), (SignatureError,))
    if not isinstance(result, SignatureError):
        assert canonical_json(result)  # what verified is canonical JSON


@fuzz_settings(share=3)
@given(json_values(max_leaves=40))
def test_verify_document_signed_by_the_key(body: Any) -> None:
    doc = _signed(body, DEVICE)
    result = parse_or_refuse(lambda: verify_document(doc, DEVICE.public_key()), (SignatureError,))
    if not isinstance(result, SignatureError):
        assert result == body


@text_target([b64url(bytes(range(32))), b64url(b"\xff" * 64), ""], share=4)
def test_b64url_decode(text: str) -> None:
    result = parse_or_refuse(lambda: b64url_decode(text), (ValueError,))
    if isinstance(result, bytes):
        assert b64url(result) == text


# -- clip manifests (device-signed; the requester and the phone read them) ----------------------


@bytes_target([CLIP_BYTES], share=3)
def test_clip_manifest_bytes(data: bytes) -> None:
    result = parse_or_refuse(
        lambda: ClipManifest.verify(data, DEVICE.public_key()),
        (SignatureError, ClipManifestInvalid),
        input_size=len(data),
    )
    if isinstance(result, ClipManifest):
        assert result.sign(DEVICE) == data.rstrip(b"\n") + b"\n" or result == CLIP


@fuzz_settings(share=3)
@given(perturbed_json(CLIP.body()))
def test_clip_manifest_signed_by_the_device(body: Any) -> None:
    data = json.dumps(_signed(body, DEVICE)).encode()
    result = parse_or_refuse(
        lambda: ClipManifest.verify(data, DEVICE.public_key()),
        (SignatureError, ClipManifestInvalid),
        input_size=len(data),
    )
    if isinstance(result, ClipManifest):
        assert ClipManifest.from_body(result.body()) == result
        assert all(_HEX64.fullmatch(s.payload_sha256) for s in result.segments)


# -- release manifests (owner-made; the device and the requester read them) --------------------


def _check_release(result: object) -> None:
    if isinstance(result, ReleaseManifest):
        ids = [result.request_id, result.device_id, result.requester_key_id]
        ids += [s.segment_id for s in result.segments] + [s.clip_id for s in result.segments]
        assert all(_SAFE_ID.fullmatch(i) for i in ids), ids
        hashes = [s.payload_sha256 for s in result.segments] + list(result.clip_manifests.values())
        assert all(_HEX64.fullmatch(h) for h in hashes), hashes
        assert parse_release_manifest(result.to_bytes()) == result


@bytes_target([RELEASE_BYTES], share=3)
def test_release_manifest_bytes(data: bytes) -> None:
    result = parse_or_refuse(
        lambda: parse_release_manifest(data), (ManifestMismatch,), input_size=len(data)
    )
    _check_release(result)


@fuzz_settings(share=3)
@given(perturbed_json(json.loads(RELEASE_BYTES)))
def test_release_manifest_json(doc: Any) -> None:
    data = json.dumps(doc).encode()
    result = parse_or_refuse(
        lambda: parse_release_manifest(data), (ManifestMismatch,), input_size=len(data)
    )
    _check_release(result)


# -- policy documents (owner-signed; the device reads them) -------------------------------------


@text_target([POLICY_TEXT], share=2)
def test_policy_document_text(text: str) -> None:
    parse_or_refuse(lambda: verify_policy(text, OWNERS), (PolicyInvalid,), input_size=len(text))


@fuzz_settings(share=3)
@given(perturbed_json(json.loads(POLICY_TEXT)["body"]))
def test_policy_document_signed_by_an_owner(body: Any) -> None:
    text = json.dumps(_signed(body, OWNER))
    result = parse_or_refuse(
        lambda: verify_policy(text, OWNERS), (PolicyInvalid,), input_size=len(text)
    )
    if isinstance(result, SignedPolicy):
        assert result.owner_key_id == key_id(OWNER.public_key())
