"""Device-side checks of an owner's release manifest against the request and the clip store.

The device holds no file key, so it cannot open the new headers: it checks that each parses and
holds exactly one stanza of the requester's recipient type, that no header repeats, and that every
segment is in the store, in the request's scope, with the payload hash the device recorded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from consent._release_manifest import ReleaseManifest
from consent.clips import ClipSource, SegmentLike
from consent.errors import HeaderInvalid, HeaderReused, ManifestMismatch, SegmentMissing
from consent.models import ConsentRequest
from crypto import age
from crypto.errors import CryptoError, DoorwardError
from crypto.signed import b64url, canonical_json

__all__ = ["check_release"]


def check_release(
    manifest: ReleaseManifest, request: ConsentRequest, clips: ClipSource, device_id: str
) -> bytes:
    """Check the manifest against the request and the store; return the clip manifests the
    owner saw (canonical JSON, clip id -> base64url), kept so the bundle carries exactly them
    even if a clip's manifest is re-signed later."""
    if manifest.request_id != request.request_id:
        raise ManifestMismatch("release manifest names another request")
    if manifest.device_id != device_id:
        raise ManifestMismatch("release manifest names another device")
    if manifest.requester_key_id != request.requester_key_id:
        raise ManifestMismatch("release manifest names another requester")
    stanza_type = age.parse_recipient(request.recipient).stanza_type
    seen_headers: dict[bytes, str] = {}
    for released in manifest.segments:
        stored = _stored_segment(clips, released.segment_id)
        if (stored.clip_id, stored.index) != (released.clip_id, released.index):
            raise ManifestMismatch(
                f"segment {released.segment_id!r} is not clip {released.clip_id!r} "
                f"index {released.index}"
            )
        if stored.payload_sha256 != released.payload_sha256:
            raise ManifestMismatch(
                f"payload hash of segment {released.segment_id!r} differs from the store's"
            )
        if not request.covers(stored.camera, stored.start_s, stored.duration_s):
            raise ManifestMismatch(
                f"segment {released.segment_id!r} is outside the request's camera or window"
            )
        _check_header(released.segment_id, released.header, stanza_type)
        if released.header in seen_headers:
            raise HeaderReused(
                f"segment {released.segment_id!r} carries the same header as segment "
                f"{seen_headers[released.header]!r}"
            )
        seen_headers[released.header] = released.segment_id
    kept = {}
    for clip_id, digest in manifest.clip_manifests.items():
        try:
            data = clips.manifest_bytes(clip_id)
        except (DoorwardError, LookupError, OSError) as exc:
            raise SegmentMissing(f"clip {clip_id!r} is not in the store") from exc
        if hashlib.sha256(data).hexdigest() != digest:
            raise ManifestMismatch(f"clip manifest of {clip_id!r} differs from the store's")
        kept[clip_id] = b64url(data)
    return canonical_json(kept)


def _stored_segment(clips: ClipSource, segment_id: str) -> SegmentLike:
    try:
        stored = clips.segment(segment_id)
        path = clips.segment_path(segment_id)
    except (DoorwardError, LookupError, OSError) as exc:
        raise SegmentMissing(f"segment {segment_id!r} is not in the store") from exc
    if not Path(path).is_file():
        raise SegmentMissing(f"segment {segment_id!r} has no file in the store")
    return stored


def _check_header(segment_id: str, header: bytes, stanza_type: str) -> None:
    try:
        parsed = age.Header.parse(header)
    except (CryptoError, ValueError) as exc:
        raise HeaderInvalid(f"new header of segment {segment_id!r} does not parse: {exc}") from exc
    types = [s.type for s in parsed.stanzas]
    if types != [stanza_type]:
        raise HeaderInvalid(
            f"new header of segment {segment_id!r} must hold exactly one {stanza_type} stanza, "
            f"got {', '.join(t[:32] for t in types[:5]) or 'none'}"
        )
