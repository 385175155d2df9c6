"""Inputs the fuzzers (tests/fuzz, fuzz/run.py) found crashing consent parsers; each is refused now
with the parser's documented error. Bundle cases are what a hostile device can send a requester:
it signs device.json, so it can list its own key as the owner and sign any consent token."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent import jws
from consent._audit_errors import CheckpointError, EntriesTampered
from consent._merkle import leaf_hash
from consent._note import Checkpoint, NoteVerifier, open_checkpoint, open_note, sign_checkpoint
from consent._policy import DEFAULT_POLICY
from consent._release_manifest import parse_release_manifest
from consent.audit_verify import AuditVerifier
from consent.clip_manifest import ClipManifest
from consent.errors import (
    BundleInvalid,
    ClipManifestInvalid,
    ManifestMismatch,
    PolicyInvalid,
    RequestInvalid,
    TokenInvalid,
)
from consent.models import PairedOwner
from consent.policy_doc import verify_policy
from consent.requester import open_bundle
from consent.requests import REQUEST_TYP, verify_request
from consent.tokens import CONSENT_TYP, checkpoint_claim, verify_owner_token
from crypto.keys import DeviceIdentity, KeyBundle, key_id
from crypto.signed import b64url_decode, canonical_json, sign_document
from tests.consent.kit import NOW, World, make_request
from tests.consent.test_flow import run_flow
from tests.consent.test_requester import _find, _members, _pack

KEY = Ed25519PrivateKey.generate()
ORIGIN = "doorward/abcdefghijklmnop"


@pytest.mark.parametrize(
    "data",
    [b"{", b"\x80", b'{"a": 1, "a": 2}', b"[" * 5000],
    ids=["truncated", "not-utf8", "repeated-member", "deeply-nested"],
)
def test_clip_manifest_rejects_malformed_json_as_invalid(data: bytes) -> None:
    with pytest.raises(ClipManifestInvalid, match="clip manifest is not valid JSON"):
        ClipManifest.verify(data, KEY.public_key())


def test_note_rejects_a_lone_surrogate() -> None:
    with pytest.raises(CheckpointError, match="note is not valid UTF-8"):
        open_note("doorward\ud800\n\n\u2014 x AAAA\n", NoteVerifier(ORIGIN, KEY.public_key()))
    with pytest.raises(CheckpointError, match="note is not valid UTF-8"):
        open_checkpoint("\udc80", NoteVerifier(ORIGIN, KEY.public_key()))


def test_note_verifier_key_rejects_a_lone_surrogate_in_its_name() -> None:
    with pytest.raises(CheckpointError, match="verifier key name is invalid"):
        NoteVerifier.parse("doorward\udce4+01234567+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")


@pytest.mark.parametrize("member", ["refused_kinds", "allowed_legal_bases", "blocked_keys"])
def test_policy_document_rejects_unhashable_list_items(member: str) -> None:
    policy = DEFAULT_POLICY.to_json()
    policy[member] = [["a list, not a string"]]
    body = {
        "type": "doorward-policy",
        "policy": policy,
        "owner": key_id(KEY.public_key()),
        "device": "abcdefghijklmnop",
        "iat": 1,
    }
    document = json.dumps(sign_document(body, KEY))
    with pytest.raises(PolicyInvalid, match="policy document refused"):
        verify_policy(document, [PairedOwner.from_public(KEY.public_key())])


# -- release bundles from a hostile device ------------------------------------------------------


def _open(members: dict[str, bytes], requester: KeyBundle, tmp_path: Path) -> None:
    open_bundle(
        io.BytesIO(_pack(members)),
        [requester.age_identity],
        tmp_path / "out",
        requester_key_id=requester.key_id,
    )


def _token_claims(members: dict[str, bytes]) -> dict[str, object]:
    token = members[_find(members, "consent-token.jws")].decode()
    return json.loads(b64url_decode(token.split(".")[1]))


def _sign_token(members: dict[str, bytes], owner: KeyBundle, claims: dict[str, object]) -> None:
    token = jws.sign_compact(claims, typ=CONSENT_TYP, kid=owner.key_id, sign=owner.signing_key.sign)
    members[_find(members, "consent-token.jws")] = token.encode()


@pytest.mark.parametrize("claim", ["sub", "request_id"])
def test_bundle_rejects_a_consent_token_without_a_claim(
    world: World,
    owner: KeyBundle,
    requester: KeyBundle,
    device: DeviceIdentity,
    tmp_path: Path,
    claim: str,
) -> None:
    members = _members(run_flow(world, owner, requester, device)[3])
    claims = _token_claims(members)
    del claims[claim]
    _sign_token(members, owner, claims)
    with pytest.raises(BundleInvalid, match=f"consent token has no {claim}"):
        _open(members, requester, tmp_path)


def test_bundle_rejects_a_malformed_release_manifest_the_token_signs(
    world: World, owner: KeyBundle, requester: KeyBundle, device: DeviceIdentity, tmp_path: Path
) -> None:
    members = _members(run_flow(world, owner, requester, device)[3])
    manifest = b'{"v": 1}'
    members[_find(members, "release-manifest.json")] = manifest
    claims = _token_claims(members)
    claims["manifest_sha256"] = hashlib.sha256(manifest).hexdigest()
    _sign_token(members, owner, claims)
    with pytest.raises(BundleInvalid, match="release manifest is malformed"):
        _open(members, requester, tmp_path)


def test_bundle_rejects_a_clip_manifest_with_a_float(
    world: World, owner: KeyBundle, requester: KeyBundle, device: DeviceIdentity, tmp_path: Path
) -> None:
    members = _members(run_flow(world, owner, requester, device)[3])
    clip_name = _find(members, "clips/clip-0001.json")
    doc = json.loads(members[clip_name])
    doc["body"]["segments"][0]["duration_ms"] = 2000.5
    clip = json.dumps(doc).encode()
    members[clip_name] = clip
    manifest_name = _find(members, "release-manifest.json")
    manifest = json.loads(members[manifest_name])
    manifest["clips"][0]["manifest_sha256"] = hashlib.sha256(clip).hexdigest()
    members[manifest_name] = canonical_json(manifest)
    claims = _token_claims(members)
    claims["manifest_sha256"] = hashlib.sha256(members[manifest_name]).hexdigest()
    _sign_token(members, owner, claims)
    with pytest.raises(BundleInvalid, match="clip manifest of 'clip-0001' does not verify"):
        _open(members, requester, tmp_path)


# -- ids and hashes checked with `re.match` and `$`, which lets a trailing newline by ------------


def _release_manifest(**changes: object) -> bytes:
    doc: dict[str, object] = {
        "v": 1,
        "request_id": "0123456789abcdef0123456789abcdef",
        "device_id": "abcdefghijklmnop",
        "requester": "requester-key-id",
        "segments": [
            {
                "segment_id": "clip-0001.000001",
                "clip_id": "clip-0001",
                "index": 1,
                "header": "YWdl",
                "payload_sha256": "ab" * 32,
            }
        ],
        "clips": [{"clip_id": "clip-0001", "manifest_sha256": "cd" * 32}],
    }
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("member", ["request_id", "device_id", "requester"])
def test_release_manifest_rejects_an_id_with_a_trailing_newline(member: str) -> None:
    with pytest.raises(ManifestMismatch, match="id must be 1 to 128 safe characters"):
        parse_release_manifest(_release_manifest(**{member: f"{member}\n"}))


def test_release_manifest_rejects_a_hash_with_a_trailing_newline() -> None:
    clips = [{"clip_id": "clip-0001", "manifest_sha256": "cd" * 32 + "\n"}]
    with pytest.raises(ManifestMismatch, match="hash must be 64 lowercase hex digits"):
        parse_release_manifest(_release_manifest(clips=clips))


def test_clip_manifest_rejects_a_payload_hash_with_a_trailing_newline() -> None:
    body = ClipManifest.from_seconds(
        device_id="abcdefghijklmnop",
        clip_id="clip-0001",
        camera="front",
        start_s=1_790_000_000,
        end_s=1_790_000_002,
        segments=[(0, 1_790_000_000, 2.0, 100, "ab" * 32)],
    ).body()
    body["segments"][0]["payload_sha256"] += "\n"  # the device signs it as it is
    with pytest.raises(ClipManifestInvalid, match="payload_sha256 must be 64 lowercase hex"):
        ClipManifest.verify(canonical_json(sign_document(body, KEY)), KEY.public_key())


@pytest.mark.parametrize("claim", ["jti", "aud", "request_id", "manifest_sha256"])
def test_owner_token_rejects_a_claim_with_a_trailing_newline(claim: str) -> None:
    claims = {
        "iss": key_id(KEY.public_key()),
        "aud": "abcdefghijklmnop",
        "jti": "release-0001",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 3600,
        "sub": "requester-key-id",
        "request_id": "0123456789abcdef0123456789abcdef",
        "manifest_sha256": "ab" * 32,
        "max_downloads": 1,
        "disclosures": {},
    }
    claims[claim] = f"{claims[claim]}\n"
    token = jws.sign_compact(claims, typ=CONSENT_TYP, kid=str(claims["iss"]), sign=KEY.sign)
    with pytest.raises(TokenInvalid, match=f"token {claim} must be"):
        verify_owner_token(
            token,
            typ=CONSENT_TYP,
            owners=[PairedOwner.from_public(KEY.public_key())],
            device_id=f"{claims['aud']}",
            now=NOW,
        )


@pytest.mark.parametrize(
    "claim",
    [
        {"size": 8, "root_hash": "ab" * 32 + "\n"},  # `$` alone would pass the newline
        {"size": 8, "root_hash": "AB" * 32},
        {"size": True, "root_hash": "ab" * 32},
        {"size": 1 << 63, "root_hash": "ab" * 32},
        {"size": 8},
    ],
)
def test_consent_checkpoint_claim_is_a_tree_size_and_a_root_exactly(claim: dict) -> None:
    with pytest.raises(TokenInvalid, match="token checkpoint"):
        checkpoint_claim(claim)


def test_consent_checkpoint_claim_reads_size_and_root() -> None:
    assert checkpoint_claim({"size": 8, "root_hash": "ab" * 32}) == (8, bytes([0xAB]) * 32)


def test_request_rejects_a_camera_with_a_trailing_newline(requester: KeyBundle) -> None:
    token = make_request(requester)
    claims = json.loads(b64url_decode(token.split(".")[1]))
    claims["camera"] = "front\n"  # a stranger signs whatever it likes
    forged = jws.sign_compact(
        claims, typ=REQUEST_TYP, kid=requester.key_id, sign=requester.signing_key.sign
    )
    with pytest.raises(RequestInvalid, match="camera must be '\\*' or a camera name"):
        verify_request(forged, NOW)


def test_audit_verifier_rejects_a_deeply_nested_entry() -> None:
    """A hostile device signs a checkpoint over an entry the JSON decoder cannot read."""
    leaf = b"[" * 5000
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, leaf_hash(leaf)), KEY)
    verifier = AuditVerifier(KEY.public_key(), ORIGIN)
    with pytest.raises(EntriesTampered, match="entry at position 0 claims another index"):
        verifier.verify_entries([leaf], note)
