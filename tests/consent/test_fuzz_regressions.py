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
from consent._audit_errors import CheckpointError
from consent._note import NoteVerifier, open_checkpoint, open_note
from consent._policy import DEFAULT_POLICY
from consent.clip_manifest import ClipManifest
from consent.errors import BundleInvalid, ClipManifestInvalid, PolicyInvalid
from consent.models import PairedOwner
from consent.policy_doc import verify_policy
from consent.requester import open_bundle
from consent.tokens import CONSENT_TYP
from crypto.keys import DeviceIdentity, KeyBundle, key_id
from crypto.signed import b64url_decode, canonical_json, sign_document
from tests.consent.kit import World
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
