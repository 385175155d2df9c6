"""The release manifest: which segments go to the requester, with their new headers.

Its SHA-256 is signed into the consent token, so neither the device nor anyone in between can add a
segment, drop one or swap a header without the token failing. The manifest travels as the exact
canonical JSON bytes the owner signed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from consent import jws
from consent.errors import ManifestMismatch, TokenInvalid
from crypto.signed import b64url, b64url_decode, canonical_json

__all__ = [
    "MAX_RELEASE_MANIFEST_BYTES",
    "ReleaseManifest",
    "ReleasedSegment",
    "parse_release_manifest",
]

MAX_RELEASE_MANIFEST_BYTES = (
    4 * 1024 * 1024
)  # 1000 segments even with ~2.1 KB hybrid headers in base64
MAX_SEGMENTS = 1000
# Used with fullmatch: `$` alone also matches before a trailing newline.
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


@dataclass(frozen=True, slots=True)
class ReleasedSegment:
    segment_id: str
    clip_id: str
    index: int
    header: bytes
    payload_sha256: str


@dataclass(frozen=True, slots=True)
class ReleaseManifest:
    request_id: str
    device_id: str
    requester_key_id: str
    segments: tuple[ReleasedSegment, ...]
    clip_manifests: dict[str, str]  # clip id -> SHA-256 hex of its device-signed manifest

    def to_bytes(self) -> bytes:
        return canonical_json(
            {
                "v": 1,
                "request_id": self.request_id,
                "device_id": self.device_id,
                "requester": self.requester_key_id,
                "segments": [
                    {
                        "segment_id": s.segment_id,
                        "clip_id": s.clip_id,
                        "index": s.index,
                        "header": b64url(s.header),
                        "payload_sha256": s.payload_sha256,
                    }
                    for s in self.segments
                ],
                "clips": [
                    {"clip_id": c, "manifest_sha256": h}
                    for c, h in sorted(self.clip_manifests.items())
                ],
            }
        )

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()


def parse_release_manifest(data: bytes) -> ReleaseManifest:
    """Parse manifest bytes strictly; raise ManifestMismatch if they are malformed."""
    if len(data) > MAX_RELEASE_MANIFEST_BYTES:
        raise ManifestMismatch(
            f"release manifest is {len(data)} bytes, over {MAX_RELEASE_MANIFEST_BYTES}"
        )
    try:
        doc = jws.loads_strict(data, "release manifest")
        return _build(doc)
    except (TokenInvalid, ValueError, KeyError, TypeError) as exc:
        raise ManifestMismatch(f"release manifest is malformed: {exc}") from exc


def _build(doc: Any) -> ReleaseManifest:
    _members(doc, {"v", "request_id", "device_id", "requester", "segments", "clips"}, "manifest")
    if doc["v"] != 1:
        raise ValueError("version must be 1")
    segments = doc["segments"]
    if not isinstance(segments, list) or not 1 <= len(segments) <= MAX_SEGMENTS:
        raise ValueError(f"segments must be a list of 1 to {MAX_SEGMENTS}")
    released = []
    for item in segments:
        _members(item, {"segment_id", "clip_id", "index", "header", "payload_sha256"}, "segment")
        index = item["index"]
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError("segment index must be a non-negative integer")
        released.append(
            ReleasedSegment(
                segment_id=_id(item["segment_id"]),
                clip_id=_id(item["clip_id"]),
                index=index,
                header=b64url_decode(item["header"]),
                payload_sha256=_hex(item["payload_sha256"]),
            )
        )
    ids = [s.segment_id for s in released]
    if len(set(ids)) != len(ids):
        raise ValueError("a segment is listed twice")
    clips: dict[str, str] = {}
    if not isinstance(doc["clips"], list):
        raise ValueError("clips must be a list")
    for item in doc["clips"]:
        _members(item, {"clip_id", "manifest_sha256"}, "clip")
        clips[_id(item["clip_id"])] = _hex(item["manifest_sha256"])
    if {s.clip_id for s in released} != set(clips):
        raise ValueError("clips must list exactly the clips of the released segments")
    return ReleaseManifest(
        request_id=_id(doc["request_id"]),
        device_id=_id(doc["device_id"]),
        requester_key_id=_id(doc["requester"]),
        segments=tuple(released),
        clip_manifests=clips,
    )


def _members(value: Any, expected: set[str], what: str) -> None:
    if not isinstance(value, dict) or set(value) != expected:
        raise ValueError(f"{what} must be an object with exactly {', '.join(sorted(expected))}")


def _id(value: Any) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise ValueError(f"id must be 1 to 128 safe characters, got {str(value)[:40]!r}")
    return value


def _hex(value: Any) -> str:
    if not isinstance(value, str) or not _HEX64_RE.fullmatch(value):
        raise ValueError("hash must be 64 lowercase hex digits")
    return value
