"""The owner's side (the phone): see pending requests with their footage, approve, decline, revoke.

Approval re-wraps each chosen segment's file key to the requester: the phone reads the segment's
whole age file, checks it against the device's signed clip manifest (which must be the one the
device sealed in its audit log when the clip finished), opens the header with its own
age identity (checking the header MAC), proves that file key opens the payload, and writes a new
header with a single stanza for the requester's recipient. The payload is untouched, so its
device-signed hash still holds. Nothing about the owner goes into a release unless passed in
``disclosures``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consent._approval_check import check_choice, rewrap_segment, signed_clips
from consent._note import Checkpoint
from consent._release_manifest import ReleaseManifest
from consent.clips import ClipLike, FootageIndex, SegmentLike
from consent.errors import ConsentError
from consent.models import ALL_CAMERAS, ConsentRequest
from consent.tokens import sign_consent, sign_decline, sign_revocation
from crypto import age
from crypto.keys import device_id as key_device_id

__all__ = ["Approval", "PendingRequest", "approve", "decline", "list_pending", "revoke"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A pending request and the clips and segments that fall in its window."""

    request: ConsentRequest
    clips: tuple[tuple[ClipLike, tuple[SegmentLike, ...]], ...]


@dataclass(frozen=True, slots=True)
class Approval:
    """What the phone posts to the device: the consent token and the release manifest bytes."""

    release_id: str
    token: str = field(repr=False)
    manifest: bytes = field(repr=False)


def list_pending(
    requests: Iterable[ConsentRequest], footage: FootageIndex, now: int
) -> list[PendingRequest]:
    """Each unexpired request with the clips and segments overlapping its window and camera."""
    result = []
    for request in requests:
        if request.expires_at_s <= now:
            continue
        result.append(PendingRequest(request, tuple(_footage_for(request, footage))))
    return result


def approve(
    signing_key: Ed25519PrivateKey,
    identities: Sequence[age.Identity],
    request: ConsentRequest,
    segments: Sequence[SegmentLike],
    footage: FootageIndex,
    *,
    device_id: str,
    device_key: Ed25519PublicKey,
    sealed: Mapping[str, str],
    token_id: str,
    now: int,
    expires_at_s: int,
    max_downloads: int = 1,
    disclosures: dict[str, str] | None = None,
    checkpoint: Checkpoint | None = None,
) -> Approval:
    """Re-wrap ``segments`` to the requester and sign the consent token; ``token_id`` names the
    release and must be unique (draw it from a CSPRNG).

    ``device_key`` is the device's signing key pinned at pairing. ``sealed`` maps clip ids to the
    manifest SHA-256 the device's verified audit log sealed them with
    (``AuditVerifier.sealed``, read right after an audit); each clip's signed manifest must hash
    to it, and a clip without a seal (still recording, or recorded before clips were sealed) is
    refused. Each segment's file is read whole from ``footage`` and must match the device's
    listing and its signed clip manifest, and its header's file key must open its payload;
    otherwise :class:`~consent.errors.ConsentError` (:class:`~consent.errors.FootageMismatch`
    when the device lied) is raised and nothing is signed. ``checkpoint`` is the audit
    checkpoint this phone last verified (``AuditVerifier.last_checkpoint``): the token carries
    it, so the release can be checked against the log the owner saw.
    """
    if not segments:
        raise ConsentError("choose at least one segment to release")
    if key_device_id(device_key) != device_id:
        raise ConsentError(f"the device key given is not the key of device {device_id!r}")
    for segment in segments:
        if not _in_scope(request, segment):
            raise ConsentError(
                f"segment {segment.segment_id!r} is outside the request's camera or window"
            )
    recipient = age.parse_recipient(request.recipient)
    ordered = check_choice(segments)
    signed = signed_clips(
        footage, dict.fromkeys(s.clip_id for s in ordered), device_key, device_id, sealed
    )
    released = [
        rewrap_segment(footage, s, signed[s.clip_id], request, identities, recipient)
        for s in ordered
    ]
    clip_manifests = {clip_id: clip.sha256 for clip_id, clip in signed.items()}
    manifest_bytes = ReleaseManifest(
        request_id=request.request_id,
        device_id=device_id,
        requester_key_id=request.requester_key_id,
        segments=tuple(released),
        clip_manifests=clip_manifests,
    ).to_bytes()
    token = sign_consent(
        signing_key,
        device_id=device_id,
        requester_key_id=request.requester_key_id,
        request_id=request.request_id,
        manifest=manifest_bytes,
        token_id=token_id,
        issued_at_s=now,
        expires_at_s=expires_at_s,
        max_downloads=max_downloads,
        disclosures=disclosures,
        checkpoint=checkpoint,
    )
    logger.info(
        "consent.approved request_id=%s release_id=%s segments=%d",
        request.request_id,
        token_id,
        len(released),
    )
    return Approval(token_id, token, manifest_bytes)


def decline(
    signing_key: Ed25519PrivateKey,
    request: ConsentRequest,
    reason: str,
    *,
    device_id: str,
    token_id: str,
    now: int,
    valid_s: int = 3600,
) -> str:
    """A signed refusal of ``request`` with the reason the requester will see."""
    return sign_decline(
        signing_key,
        device_id=device_id,
        request_id=request.request_id,
        reason=reason,
        token_id=token_id,
        issued_at_s=now,
        expires_at_s=now + valid_s,
    )


def revoke(
    signing_key: Ed25519PrivateKey,
    release_id: str,
    *,
    device_id: str,
    token_id: str,
    now: int,
    valid_s: int = 3600,
) -> str:
    """A signed withdrawal of a release; the device refuses it once the release was downloaded."""
    return sign_revocation(
        signing_key,
        device_id=device_id,
        release_id=release_id,
        token_id=token_id,
        issued_at_s=now,
        expires_at_s=now + valid_s,
    )


def _footage_for(
    request: ConsentRequest, footage: FootageIndex
) -> Iterable[tuple[ClipLike, tuple[SegmentLike, ...]]]:
    camera = None if request.camera == ALL_CAMERAS else request.camera
    clips = footage.list_clips(
        camera=camera, start_s=request.window_start_s, end_s=request.window_end_s
    )
    for clip in clips:
        segments = tuple(s for s in footage.list_segments(clip.clip_id) if _in_scope(request, s))
        if segments:
            yield clip, segments


def _in_scope(request: ConsentRequest, segment: SegmentLike) -> bool:
    return request.covers(segment.camera, segment.start_s, segment.duration_s)
