"""What the phone proves before it re-wraps a file key: that the footage a device serves is the
footage it signed, and that each header's file key opens the payload it will stand in front of.

A compromised device holds no file key, but it answers every fetch. It could hand over segment B's
header under segment A's id and so get B's key re-wrapped to the requester in A's name. So the
phone reads each chosen segment's whole age file itself: it hashes the payload (streaming, a
64 KiB chunk at a time), compares that hash with the device's listing and with the clip manifest
the device signed (verified against the device key pinned at pairing), and re-wraps the header
only if the payload's first STREAM chunk authenticates under its file key
(``crypto.age.reheader_for_payload``). The release manifest then carries the hash the phone
computed, not one the device told it.

A device that holds its signing key could still re-sign a clip's manifest with two segments'
entries swapped and serve each file under the other's id: every check above would pass. So each
clip's manifest must also be the one the device sealed in its audit log when the clip finished
(``clip.sealed``, indexed by the phone as it verifies the log): a device compromised after that
cannot change what it sealed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consent._release_manifest import ReleasedSegment
from consent.clip_manifest import ClipManifest, ClipManifestSegment
from consent.clips import FootageIndex, SegmentLike, segment_id_for
from consent.errors import ConsentError, FootageMismatch
from consent.models import ConsentRequest
from crypto import age
from crypto.errors import CryptoError, HeaderMacError, NoIdentityMatched, SignatureError

__all__ = ["SignedClip", "check_choice", "rewrap_segment", "signed_clips"]

_READ_BYTES = 64 * 1024
_COMPROMISED = "the device may be compromised, nothing was signed"
_TIME_SLACK_MS = 1  # the manifest keeps whole milliseconds of the store's float seconds


@dataclass(frozen=True, slots=True)
class SignedClip:
    """A clip manifest the device signed, as the phone verified it."""

    manifest: ClipManifest
    sha256: str  # hex SHA-256 of the manifest bytes as served, for the release manifest
    entries: dict[int, ClipManifestSegment]  # by segment index


def check_choice(segments: Sequence[SegmentLike]) -> list[SegmentLike]:
    """The chosen segments in release order (clip, then index); refuses a segment chosen twice
    and one whose id does not name its clip and index."""
    seen: set[str] = set()
    for segment in segments:
        if segment.segment_id in seen:
            raise FootageMismatch(
                f"refusing to approve: segment {segment.segment_id!r} is chosen twice; "
                "nothing was signed"
            )
        seen.add(segment.segment_id)
        expected = segment_id_for(segment.clip_id, segment.index)
        if segment.segment_id != expected:
            raise _mismatch(
                f"segment {segment.segment_id!r}",
                f"the device lists it as clip {segment.clip_id!r} index {segment.index}, "
                f"whose id is {expected!r}",
            )
    return sorted(segments, key=lambda s: (s.clip_id, s.index))


def signed_clips(
    footage: FootageIndex,
    clip_ids: Iterable[str],
    device_key: Ed25519PublicKey,
    device_id: str,
    sealed: Mapping[str, str],
) -> dict[str, SignedClip]:
    """Each clip's manifest, fetched once, verified against ``device_key`` and found to be the
    one ``sealed`` (clip id -> manifest SHA-256 from the verified audit log) names."""
    clip_ids = list(clip_ids)
    for clip_id in clip_ids:
        if clip_id not in sealed:
            raise ConsentError(
                f"refusing to approve: clip {clip_id!r} was not sealed in the audit log this "
                "phone verified (a clip is sealed when it finishes recording; a doorbell running "
                "a doorward version from before clip sealing seals none, and seals the clips it "
                "holds once upgraded): wait until the clip finishes or the doorbell is upgraded, "
                "then run `doorward owner audit` and approve again; nothing was signed"
            )
    signed = {}
    for clip_id in clip_ids:
        clip = _signed_clip(footage, clip_id, device_key, device_id)
        if clip.manifest.end_ms is None and clip.sha256 != sealed[clip_id]:
            # Fetched while it was still recording, sealed since: fetch it again.
            raise ConsentError(
                f"refusing to approve: clip {clip_id!r} was still recording when its footage was "
                "fetched; approve again now that it has finished; nothing was signed"
            )
        if clip.sha256 != sealed[clip_id]:
            raise _mismatch(
                f"clip {clip_id!r}",
                f"its signed manifest hashes to {clip.sha256}, but the device sealed the clip "
                f"with {str(sealed[clip_id])[:64]} in the audit log when it finished: the device "
                "re-signed its manifest since",
            )
        signed[clip_id] = clip
    return signed


def rewrap_segment(
    footage: FootageIndex,
    segment: SegmentLike,
    signed: SignedClip,
    request: ConsentRequest,
    identities: Sequence[age.Identity],
    recipient: age.Recipient,
) -> ReleasedSegment:
    """The segment's new header for ``recipient``, once its file matches the listing and the
    signed manifest and its header's file key opens its payload."""
    where = f"segment {segment.segment_id!r}"
    entry = _signed_entry(segment, signed, request, where)
    with footage.read_segment(segment.segment_id) as src:
        try:
            header = age.read_header(src)
        except CryptoError as exc:
            raise _mismatch(where, f"its age header is unreadable ({exc})") from exc
        if len(header) >= entry.size:
            raise _mismatch(where, f"its header alone is larger than the {entry.size} bytes signed")
        # Read at most one byte more than the signed size allows: a longer file is refused
        # without reading it all.
        head, payload_size, digest = _hash_payload(src, entry.size - len(header) + 1)
    size = len(header) + payload_size
    if size > entry.size:
        raise _mismatch(where, f"its file is larger than the {entry.size} bytes the device signed")
    if digest != segment.payload_sha256:
        raise _mismatch(
            where,
            f"its payload hashes to {digest}, but the device listed it with "
            f"{str(segment.payload_sha256)[:64]}",
        )
    if digest != entry.payload_sha256:
        raise _mismatch(
            where,
            f"its payload hashes to {digest}, but the device signed {entry.payload_sha256} for "
            f"clip {segment.clip_id!r} index {segment.index}",
        )
    if size != entry.size:
        raise _mismatch(where, f"its file is {size} bytes, but the device signed {entry.size}")
    try:
        new_header = age.reheader_for_payload(
            header, identities, [recipient], payload_head=head, payload_size=payload_size
        )
    except NoIdentityMatched as exc:
        raise ConsentError(
            f"refusing to approve: {where}: none of your age identities opens its header (was it "
            "recorded before this phone was paired?); nothing was signed"
        ) from exc
    except HeaderMacError as exc:
        raise _mismatch(where, "its header MAC is wrong") from exc
    except CryptoError as exc:
        raise _mismatch(
            where,
            f"its payload does not open under the file key of the header the device sent ({exc})",
        ) from exc
    return ReleasedSegment(
        segment_id=segment.segment_id,
        clip_id=segment.clip_id,
        index=segment.index,
        header=new_header,
        payload_sha256=digest,
    )


def _signed_clip(
    footage: FootageIndex, clip_id: str, device_key: Ed25519PublicKey, device_id: str
) -> SignedClip:
    where = f"clip {clip_id!r}"
    data = footage.manifest_bytes(clip_id)
    try:
        manifest = ClipManifest.verify(data, device_key)
    except SignatureError as exc:
        raise _mismatch(
            where, f"its manifest is not signed by the device key pinned at pairing ({exc})"
        ) from exc
    except ConsentError as exc:
        raise _mismatch(where, f"its signed manifest is unreadable ({exc})") from exc
    if manifest.clip_id != clip_id:
        raise _mismatch(where, f"the device sent the signed manifest of clip {manifest.clip_id!r}")
    if manifest.device_id != device_id:
        raise _mismatch(where, f"its manifest names device {manifest.device_id!r}")
    entries: dict[int, ClipManifestSegment] = {}
    indexes: dict[str, int] = {}
    last = -1
    for entry in manifest.segments:
        if entry.index <= last:
            raise _mismatch(
                where, f"its signed manifest lists index {entry.index} after index {last}"
            )
        last = entry.index
        if entry.payload_sha256 in indexes:
            raise _mismatch(
                where,
                f"its signed manifest lists the payload {entry.payload_sha256} at indexes "
                f"{indexes[entry.payload_sha256]} and {entry.index}",
            )
        indexes[entry.payload_sha256] = entry.index
        entries[entry.index] = entry
    return SignedClip(manifest, hashlib.sha256(data).hexdigest(), entries)


def _signed_entry(
    segment: SegmentLike, signed: SignedClip, request: ConsentRequest, where: str
) -> ClipManifestSegment:
    """The signed manifest's record of ``segment``, once the listing agrees with it and it lies
    in the request's camera and window as signed."""
    clip = signed.manifest
    entry = signed.entries.get(segment.index)
    if entry is None:
        raise _mismatch(
            where,
            f"the device's signed manifest of clip {clip.clip_id!r} has no index {segment.index}",
        )
    if segment.camera != clip.camera:
        raise _mismatch(
            where, f"the device lists it on camera {segment.camera!r} but signed {clip.camera!r}"
        )
    if (
        abs(segment.start_s * 1000 - entry.start_ms) > _TIME_SLACK_MS
        or abs(segment.duration_s * 1000 - entry.duration_ms) > _TIME_SLACK_MS
    ):
        raise _mismatch(
            where,
            f"the device lists it at {segment.start_s:.3f} s for {segment.duration_s:.3f} s but "
            f"signed {entry.start_ms / 1000:.3f} s for {entry.duration_ms / 1000:.3f} s",
        )
    if not request.covers(clip.camera, entry.start_ms / 1000, entry.duration_ms / 1000):
        raise _mismatch(where, "as the device signed it, it is outside the request's window")
    return entry


def _hash_payload(src: BinaryIO, limit: int) -> tuple[bytes, int, str]:
    """(the payload's first PAYLOAD_HEAD_SIZE bytes, its size, its SHA-256 hex), reading at
    most ``limit`` bytes."""
    digest = hashlib.sha256()
    head = bytearray()
    size = 0
    while size < limit:
        chunk = src.read(min(_READ_BYTES, limit - size))
        if not chunk:
            break
        if len(head) < age.PAYLOAD_HEAD_SIZE:
            head += chunk[: age.PAYLOAD_HEAD_SIZE - len(head)]
        digest.update(chunk)
        size += len(chunk)
    return bytes(head), size, digest.hexdigest()


def _mismatch(where: str, what: str) -> FootageMismatch:
    return FootageMismatch(f"refusing to approve: {where}: {what}; {_COMPROMISED}")
