"""The clip manifest: the device's bytes, the round trip, and what a reader refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent.clip_manifest import ClipManifest, ClipManifestSegment
from consent.errors import ClipManifestInvalid
from crypto.errors import SignatureError
from crypto.keys import DeviceIdentity
from crypto.signed import canonical_json, sign_document

# Written by the device store's code before the manifest moved to consent, with this fixed key.
VECTOR = Path(__file__).parent / "data" / "clip_manifest_v1.json"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
DEVICE = DeviceIdentity(KEY)
SEGMENTS = [
    (0, 1_790_000_000.1234, 2.0, 1234, "ab" * 32),
    (1, 1_790_000_002.1234, 1.9996, 999, "cd" * 32),
]


def _manifest(end_s: float | None = 1_790_000_004.1) -> ClipManifest:
    return ClipManifest.from_seconds(
        device_id=DEVICE.device_id,
        clip_id="front-20260921-101010-ab12",
        camera="front",
        start_s=1_790_000_000.1234,
        end_s=end_s,
        segments=SEGMENTS,
    )


def _resigned(edit: Any) -> bytes:
    """The vector's body edited by ``edit`` and signed again by the device key."""
    body = json.loads(VECTOR.read_bytes())["body"]
    edit(body)
    return canonical_json(sign_document(body, KEY)) + b"\n"


def test_device_bytes_are_unchanged() -> None:
    assert _manifest().sign(KEY) == VECTOR.read_bytes()


def test_parse_reads_the_fields() -> None:
    manifest = ClipManifest.verify(VECTOR.read_bytes(), DEVICE.public_key)
    assert manifest.device_id == DEVICE.device_id
    assert (manifest.start_ms, manifest.end_ms) == (1_790_000_000_123, 1_790_000_004_100)
    assert manifest.segments[1] == ClipManifestSegment(
        index=1, start_ms=1_790_000_002_123, duration_ms=2000, size=999, payload_sha256="cd" * 32
    )


@pytest.mark.parametrize("end_s", [1_790_000_004.1, None], ids=["finished", "recording"])
def test_round_trip(end_s: float | None) -> None:
    manifest = _manifest(end_s)
    data = manifest.sign(KEY)
    parsed = ClipManifest.verify(data, DEVICE.public_key)
    assert parsed == manifest
    assert parsed.sign(KEY) == data


def _set(name: str, value: Any) -> Any:
    return lambda body: body.__setitem__(name, value)


def _set_segment(name: str, value: Any) -> Any:
    return lambda body: body["segments"][0].__setitem__(name, value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _set("type", "doorward-clip-manifest"),
            "clip manifest type must be 'doorward.clip-manifest', got 'doorward-clip-manifest'",
        ),
        (
            lambda body: body.pop("type"),
            "clip manifest type must be 'doorward.clip-manifest', got None",
        ),
        (_set("version", 2), "clip manifest version must be 1, got 2"),
        (_set("version", "1"), "clip manifest version must be 1, got '1'"),
        (_set("version", True), "clip manifest version must be 1, got True"),
        (
            lambda body: body.pop("start"),
            "clip manifest must be an object with exactly camera, clip_id, device_id, end, "
            "segments, start, type, version, got ['camera', 'clip_id', 'device_id', 'end', "
            "'segments', 'type', 'version']",
        ),
        (
            _set("start", "2026-09-21 14:13:20"),
            "clip manifest start must be UTC time like 2026-11-26T10:56:50.123Z, "
            "got '2026-09-21 14:13:20'",
        ),
        (_set("camera", ""), "clip manifest camera must be a non-empty string, got ''"),
        (_set("segments", {}), "clip manifest segments must be a list, got {}"),
        (
            _set_segment("index", -1),
            "clip manifest segment index must be a non-negative integer, got -1",
        ),
        (
            _set_segment("payload_sha256", "AB" * 32),
            "clip manifest segment payload_sha256 must be 64 lowercase hex digits, got "
            + repr("AB" * 32)[:64],
        ),
    ],
    ids=[
        "wrong type",
        "no type",
        "wrong version",
        "version as text",
        "version as bool",
        "missing member",
        "bad time",
        "empty camera",
        "segments not a list",
        "negative index",
        "uppercase hash",
    ],
)
def test_signed_but_malformed_manifest_is_refused(edit: Any, message: str) -> None:
    with pytest.raises(ClipManifestInvalid) as info:
        ClipManifest.verify(_resigned(edit), DEVICE.public_key)
    assert str(info.value) == message


def test_altered_manifest_is_refused() -> None:
    data = VECTOR.read_bytes().replace(b'"camera":"front"', b'"camera":"back"')
    with pytest.raises(SignatureError) as info:
        ClipManifest.verify(data, DEVICE.public_key)
    assert str(info.value) == "signature does not verify: the document was altered"


def test_manifest_of_another_device_is_refused() -> None:
    other = DeviceIdentity.generate()
    with pytest.raises(SignatureError) as info:
        ClipManifest.verify(VECTOR.read_bytes(), other.public_key)
    assert str(info.value) == (
        "signed document was signed by a different key than expected; "
        "check that it comes from the device you paired with"
    )


def test_oversized_manifest_is_refused_before_parsing() -> None:
    with pytest.raises(ClipManifestInvalid) as info:
        ClipManifest.verify(b" " * (4 * 1024 * 1024 + 1), DEVICE.public_key)
    assert str(info.value) == "clip manifest must be at most 4194304 bytes, got 4194305"
