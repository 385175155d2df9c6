"""The device-signed clip manifest, both ways: what the device store writes for each clip and what a
requester checks a released segment against.

One signed document (``crypto.signed``) per clip, canonical JSON plus a newline::

    {"alg": "Ed25519", "key": ..., "sig": ..., "body": {
        "type": "doorward.clip-manifest", "version": 1,
        "device_id": ..., "clip_id": ..., "camera": ...,
        "start": "2026-11-26T10:56:50.123Z", "end": <the same, or null while recording>,
        "segments": [{"index": 0, "start": ..., "duration_ms": 2000, "size": 123456,
                      "payload_sha256": <hex of the age payload, the bytes after the header>}]}}

Times are RFC 3339 UTC text with milliseconds and durations integer milliseconds: signed JSON
refuses floats. The payload hash survives re-heading, so it still holds for a released segment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consent import jws
from consent.errors import ClipManifestInvalid, DuplicateKey, TokenInvalid
from crypto.signed import canonical_json, sign_document, verify_document

__all__ = [
    "CLIP_MANIFEST_TYPE",
    "CLIP_MANIFEST_VERSION",
    "MANIFEST_NAME",
    "MAX_CLIP_MANIFEST_BYTES",
    "ClipManifest",
    "ClipManifestSegment",
]

CLIP_MANIFEST_TYPE = "doorward.clip-manifest"
CLIP_MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"  # its file name in a clip's folder of the device store
MAX_CLIP_MANIFEST_BYTES = 4 * 1024 * 1024  # a 1-hour clip of 2-s segments is about 300 KB

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# Used with fullmatch: `$` alone also matches before a trailing newline.
_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_BODY = {"type", "version", "device_id", "clip_id", "camera", "start", "end", "segments"}
_SEGMENT = {"index", "start", "duration_ms", "size", "payload_sha256"}
_SEG_WHAT = "clip manifest segment"


@dataclass(frozen=True, slots=True)
class ClipManifestSegment:
    """One segment of a clip: where it starts, how long it is, and the hash of its age payload."""

    index: int
    start_ms: int  # Unix time, milliseconds
    duration_ms: int
    size: int  # bytes of the whole age file as stored
    payload_sha256: str  # hex


@dataclass(frozen=True, slots=True)
class ClipManifest:
    """A clip as the device signs it; ``end_ms`` is None while the clip is still recording."""

    device_id: str
    clip_id: str
    camera: str
    start_ms: int
    end_ms: int | None
    segments: tuple[ClipManifestSegment, ...]

    @classmethod
    def from_seconds(
        cls,
        *,
        device_id: str,
        clip_id: str,
        camera: str,
        start_s: float,
        end_s: float | None,
        segments: Sequence[tuple[int, float, float, int, str]],
    ) -> ClipManifest:
        """Build from store rows; ``segments`` are (index, start_s, duration_s, size, sha256 hex)."""
        return cls(
            device_id=device_id,
            clip_id=clip_id,
            camera=camera,
            start_ms=_epoch_ms(start_s),
            end_ms=None if end_s is None else _epoch_ms(end_s),
            segments=tuple(
                ClipManifestSegment(
                    index=index,
                    start_ms=_epoch_ms(seg_start_s),
                    duration_ms=round(duration_s * 1000),
                    size=size,
                    payload_sha256=sha256_hex,
                )
                for index, seg_start_s, duration_s, size, sha256_hex in segments
            ),
        )

    def body(self) -> dict[str, Any]:
        """The signed body, as JSON values."""
        return {
            "type": CLIP_MANIFEST_TYPE,
            "version": CLIP_MANIFEST_VERSION,
            "device_id": self.device_id,
            "clip_id": self.clip_id,
            "camera": self.camera,
            "start": _utc_text(self.start_ms),
            "end": None if self.end_ms is None else _utc_text(self.end_ms),
            "segments": [
                {
                    "index": s.index,
                    "start": _utc_text(s.start_ms),
                    "duration_ms": s.duration_ms,
                    "size": s.size,
                    "payload_sha256": s.payload_sha256,
                }
                for s in self.segments
            ],
        }

    def sign(self, device_key: Ed25519PrivateKey) -> bytes:
        """The manifest file: the signed document as canonical JSON and a newline."""
        return canonical_json(sign_document(self.body(), device_key)) + b"\n"

    @classmethod
    def verify(cls, data: bytes, device_key: Ed25519PublicKey) -> ClipManifest:
        """Parse a manifest file signed by ``device_key``.

        Raises ``crypto.errors.SignatureError`` if the device did not sign it (or it was altered)
        and :class:`~consent.errors.ClipManifestInvalid` if it is not a version-1 clip manifest.
        """
        if len(data) > MAX_CLIP_MANIFEST_BYTES:
            raise ClipManifestInvalid(
                f"clip manifest must be at most {MAX_CLIP_MANIFEST_BYTES} bytes, got {len(data)}"
            )
        try:
            doc = jws.loads_strict(data, "clip manifest")
        except DuplicateKey as exc:
            raise ClipManifestInvalid(f"clip manifest is not valid JSON: {exc}") from exc
        except TokenInvalid as exc:
            raise ClipManifestInvalid(str(exc)) from exc
        return cls.from_body(verify_document(doc, device_key))

    @classmethod
    def from_body(cls, body: Any) -> ClipManifest:
        """Check a signed body's type, version and fields; use :meth:`verify` on untrusted bytes."""
        if not isinstance(body, dict):
            raise ClipManifestInvalid("clip manifest body must be a JSON object")
        if body.get("type") != CLIP_MANIFEST_TYPE:
            raise ClipManifestInvalid(
                f"clip manifest type must be {CLIP_MANIFEST_TYPE!r}, got {_quote(body.get('type'))}"
            )
        version = body.get("version")
        if type(version) is not int or version != CLIP_MANIFEST_VERSION:
            raise ClipManifestInvalid(
                f"clip manifest version must be {CLIP_MANIFEST_VERSION}, got {_quote(version)}"
            )
        _members(body, _BODY, "clip manifest")
        segments = body["segments"]
        if not isinstance(segments, list):
            raise ClipManifestInvalid(
                f"clip manifest segments must be a list, got {_quote(segments)}"
            )
        return cls(
            device_id=_text(body, "device_id"),
            clip_id=_text(body, "clip_id"),
            camera=_text(body, "camera"),
            start_ms=_time(body, "start", "clip manifest"),
            end_ms=None if body["end"] is None else _time(body, "end", "clip manifest"),
            segments=tuple(_segment(item) for item in segments),
        )


def _segment(item: Any) -> ClipManifestSegment:
    _members(item, _SEGMENT, _SEG_WHAT)
    digest = item["payload_sha256"]
    if not isinstance(digest, str) or not _HEX64_RE.fullmatch(digest):
        raise ClipManifestInvalid(
            f"{_SEG_WHAT} payload_sha256 must be 64 lowercase hex digits, got {_quote(digest)}"
        )
    return ClipManifestSegment(
        index=_count(item, "index", _SEG_WHAT),
        start_ms=_time(item, "start", _SEG_WHAT),
        duration_ms=_count(item, "duration_ms", _SEG_WHAT),
        size=_count(item, "size", _SEG_WHAT),
        payload_sha256=digest,
    )


def _members(value: Any, expected: set[str], what: str) -> None:
    if not isinstance(value, dict) or set(value) != expected:
        got = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise ClipManifestInvalid(
            f"{what} must be an object with exactly {', '.join(sorted(expected))}, got {got}"
        )


def _text(doc: dict[str, Any], name: str) -> str:
    value = doc[name]
    if not isinstance(value, str) or not value:
        raise ClipManifestInvalid(
            f"clip manifest {name} must be a non-empty string, got {_quote(value)}"
        )
    return value


def _count(doc: dict[str, Any], name: str, what: str) -> int:
    value = doc[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ClipManifestInvalid(
            f"{what} {name} must be a non-negative integer, got {_quote(value)}"
        )
    return value


def _time(doc: dict[str, Any], name: str, what: str) -> int:
    value = doc[name]
    if isinstance(value, str) and _UTC_RE.fullmatch(value):
        try:
            moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except ValueError:
            pass
        else:
            return (moment - _EPOCH) // _MS
    raise ClipManifestInvalid(
        f"{what} {name} must be UTC time like 2026-11-26T10:56:50.123Z, got {_quote(value)}"
    )


def _epoch_ms(epoch_s: float) -> int:
    # The millisecond the device has always written: round to 3 decimals, then truncate.
    moment = datetime.fromtimestamp(round(epoch_s, 3), tz=UTC)
    return (moment - _EPOCH) // _MS


def _utc_text(epoch_ms: int) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-26T10:56:50.123Z``."""
    moment = _EPOCH + epoch_ms * _MS
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def _quote(value: Any) -> str:
    """A peer-supplied value, shortened for an error message."""
    return repr(value)[:64]
