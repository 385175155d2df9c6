"""Fuzz the requester's reader of release bundles (``consent.requester.open_bundle``).

A bundle comes from a device the requester may have no reason to trust, and a hostile device
controls everything in it: it signs ``device.json`` and may list its own key as the owner, so it
can sign any consent token too. Besides byte-level mutants of the whole tar and of each member,
the structured targets change one part and re-sign (and re-hash) what depends on it, so every
check behind the signatures is reached. The only error ``open_bundle`` may raise is
``BundleInvalid``; a bundle it accepts has a report that names what was checked.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent._merkle import leaf_hash
from consent._note import Checkpoint, sign_checkpoint
from consent._release_manifest import ReleasedSegment, ReleaseManifest
from consent.audit import audit_origin
from consent.bundle import write_bundle
from consent.clip_manifest import ClipManifest
from consent.errors import BundleInvalid
from consent.requester import VerificationReport, open_bundle
from consent.tokens import CONSENT_TYP
from crypto import age
from crypto.keys import DeviceIdentity, KeyBundle
from crypto.signed import b64url, canonical_json, sign_document
from tests.consent.kit import NOW, DirClips
from tests.fuzz.kit import bytes_target, fuzz_bytes, fuzz_settings, parse_or_refuse, perturbed_json

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.timeout(180)]

Members = dict[str, bytes]

DEVICE = DeviceIdentity.generate()
OWNER = KeyBundle.generate("x25519")
REQUESTER = KeyBundle.generate("x25519")
RELEASE_ID = "release-0001"
REQUEST_ID = "0123456789abcdef0123456789abcdef"


def _build() -> bytes:
    """A valid bundle of one clip of two small segments, written by the device's own code."""
    with tempfile.TemporaryDirectory() as tmp:
        clips = DirClips(Path(tmp), DEVICE)
        stored = clips.add_clip(
            "clip-0001", "front", NOW - 3600, [b"first segment", b"second"], [OWNER.recipient]
        )
        segments = []
        for segment in stored:
            header, _ = age.split_header(segment.path.read_bytes())
            new = age.reheader(header, [OWNER.age_identity], [REQUESTER.recipient])
            segments.append(
                ReleasedSegment(
                    segment.segment_id, "clip-0001", segment.index, new, segment.payload_sha256
                )
            )
        clip_manifest = clips.manifest_bytes("clip-0001")
        manifest = ReleaseManifest(
            request_id=REQUEST_ID,
            device_id=DEVICE.device_id,
            requester_key_id=REQUESTER.key_id,
            segments=tuple(segments),
            clip_manifests={"clip-0001": hashlib.sha256(clip_manifest).hexdigest()},
        ).to_bytes()
        token = _token(_claims(manifest))
        leaf = canonical_json(
            {
                "kind": "release.created",
                "index": 0,
                "time": NOW,
                "release_id": RELEASE_ID,
                "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
            }
        )
        origin = audit_origin(DEVICE.public_key)
        checkpoint = sign_checkpoint(Checkpoint(origin, 1, leaf_hash(leaf)), DEVICE.private_key)
        out = io.BytesIO()
        write_bundle(
            out,
            device=DEVICE,
            release_id=RELEASE_ID,
            token=token,
            manifest=manifest,
            owner_key_id=OWNER.key_id,
            owner_public=b64url(OWNER.signing_key.public_key().public_bytes_raw()),
            clips=clips,
            clip_manifests={"clip-0001": clip_manifest},
            checkpoint=checkpoint,
            leaf=leaf,
            leaf_index=0,
            tree_size=1,
            proof=[],
        )
        return out.getvalue()


def _claims(manifest: bytes) -> dict[str, Any]:
    return {
        "iss": OWNER.key_id,
        "aud": DEVICE.device_id,
        "jti": RELEASE_ID,
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "exp": NOW + 86400,
        "sub": REQUESTER.key_id,
        "request_id": REQUEST_ID,
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "max_downloads": 1,
        "disclosures": {},
    }


def _token(claims: Any) -> str:
    """A consent token over any JSON claims, signed by the owner the device lists."""
    header = canonical_json({"alg": "Ed25519", "kid": OWNER.key_id, "typ": CONSENT_TYP})
    signing_input = f"{b64url(header)}.{b64url(json.dumps(claims).encode())}"
    signature = OWNER.signing_key.sign(signing_input.encode())
    return f"{signing_input}.{b64url(signature)}"


def _unpack(bundle: bytes) -> Members:
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _pack(members: Members) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


BUNDLE = _build()
MEMBERS = _unpack(BUNDLE)


def _name(suffix: str) -> str:
    return next(n for n in MEMBERS if n.endswith(suffix))


DEVICE_JSON = _name("/device.json")
TOKEN = _name("/consent-token.jws")
MANIFEST = _name("/release-manifest.json")
CLIP = _name("/clips/clip-0001.json")
CHECKPOINT = _name("/audit/checkpoint.txt")
INCLUSION = _name("/audit/inclusion.json")
SEGMENT = _name(".000001.age")


def _open(bundle: bytes, *, pinned: bool) -> VerificationReport | BaseException:
    with tempfile.TemporaryDirectory() as tmp:
        result = parse_or_refuse(
            lambda: open_bundle(
                io.BytesIO(bundle),
                [REQUESTER.age_identity],
                Path(tmp) / "out",
                requester_key_id=REQUESTER.key_id,
                device_key=DEVICE.public_key if pinned else None,
            ),
            (BundleInvalid,),
            input_size=len(bundle),
        )
    if isinstance(result, VerificationReport):
        assert result.checks
        assert result.device_id == DEVICE.device_id or not pinned
    return result


def test_the_seed_bundle_opens() -> None:
    report = _open(BUNDLE, pinned=True)
    assert isinstance(report, VerificationReport)
    assert report.ok


@bytes_target([BUNDLE], share=0.5, raw_max_size=2048)
def test_bundle_bytes(data: bytes) -> None:
    _open(data, pinned=True)


@fuzz_settings(share=1)
@given(st.sampled_from(sorted(MEMBERS)), fuzz_bytes(list(MEMBERS.values())), st.booleans())
def test_bundle_member_bytes(name: str, data: bytes, pinned: bool) -> None:
    _open(_pack({**MEMBERS, name: data}), pinned=pinned)


_ROOT = DEVICE_JSON.rsplit("/", 1)[0]
_NAMES = st.one_of(
    st.sampled_from(sorted(MEMBERS)),
    st.sampled_from(["", "/", "..", f"{_ROOT}/../x", f"{_ROOT}/segments/.age", "other/x"]),
    st.text(max_size=40).map(lambda t: f"{_ROOT}/{t}"),
)


@fuzz_settings(share=1)
@given(st.lists(st.tuples(_NAMES, st.sampled_from(sorted(MEMBERS))), min_size=1, max_size=4))
def test_bundle_member_names(changes: list[tuple[str, str]]) -> None:
    """Members renamed, duplicated or added under odd names."""
    members = dict(MEMBERS)
    for new, old in changes:
        members[new] = MEMBERS[old]
    _open(_pack(members), pinned=True)


def _device_body() -> Any:
    return json.loads(MEMBERS[DEVICE_JSON])["body"]


@fuzz_settings(share=1)
@given(perturbed_json(_device_body()))
def test_hostile_device_json(body: Any) -> None:
    doc = sign_document(body, DEVICE.private_key) if _canonical(body) else _any_doc(body)
    _open(_pack({**MEMBERS, DEVICE_JSON: json.dumps(doc).encode()}), pinned=False)


@fuzz_settings(share=1)
@given(perturbed_json(_claims(MEMBERS[MANIFEST])))
def test_hostile_token_claims(claims: Any) -> None:
    _open(_pack({**MEMBERS, TOKEN: _token(claims).encode()}), pinned=True)


@fuzz_settings(share=1)
@given(perturbed_json(json.loads(MEMBERS[MANIFEST])))
def test_hostile_release_manifest(doc: Any) -> None:
    manifest = json.dumps(doc).encode()
    token = _token(_claims(manifest)).encode()
    _open(_pack({**MEMBERS, MANIFEST: manifest, TOKEN: token}), pinned=True)


@fuzz_settings(share=1)
@given(perturbed_json(json.loads(MEMBERS[CLIP])["body"]))
def test_hostile_clip_manifest(body: Any) -> None:
    doc = sign_document(body, DEVICE.private_key) if _canonical(body) else _any_doc(body)
    clip = canonical_json(doc) + b"\n" if _canonical(doc) else json.dumps(doc).encode()
    manifest_doc = json.loads(MEMBERS[MANIFEST])
    manifest_doc["clips"][0]["manifest_sha256"] = hashlib.sha256(clip).hexdigest()
    manifest = canonical_json(manifest_doc)
    token = _token(_claims(manifest)).encode()
    _open(_pack({**MEMBERS, CLIP: clip, MANIFEST: manifest, TOKEN: token}), pinned=True)


@fuzz_settings(share=1)
@given(perturbed_json(json.loads(MEMBERS[INCLUSION])))
def test_hostile_inclusion_proof(doc: Any) -> None:
    _open(_pack({**MEMBERS, INCLUSION: json.dumps(doc).encode()}), pinned=True)


def _canonical(value: Any) -> bool:
    try:
        canonical_json(value)
    except ValueError:
        return False
    return True


def _any_doc(body: Any) -> dict[str, Any]:
    """A device-signed document for a body canonical JSON refuses (floats, deep nesting)."""
    raw = DEVICE.public_key.public_bytes_raw()
    return {"alg": "Ed25519", "key": b64url(raw), "body": body, "sig": b64url(bytes(64))}


def test_clip_manifest_seed_is_the_device_s() -> None:
    assert ClipManifest.verify(MEMBERS[CLIP], DEVICE.public_key).clip_id == "clip-0001"
