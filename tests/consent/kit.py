"""Consent test kit: a directory-backed clip store holding real age files and device-signed
manifests, the paired owners, a device world (store, audit log, consent desk), and a helper
that signs requests. Tests import these; the fixtures in conftest.py build on them."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import consent.owner
from consent.clip_manifest import MANIFEST_NAME, ClipManifest
from consent.clips import StoreFootage
from consent.models import ConsentRequest, PairedOwner, RequesterIdentity
from consent.owner import Approval
from consent.requests import sign_request
from crypto import age
from crypto.keys import DeviceIdentity, KeyBundle

NOW = 1_790_000_000  # a fixed "now" (2026-09-21): every test passes time explicitly
HOUR = 3600


@dataclass(frozen=True, slots=True)
class Clip:
    clip_id: str
    camera: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class Segment:
    segment_id: str
    clip_id: str
    camera: str
    index: int
    start_s: float
    duration_s: float
    size: int
    payload_sha256: str
    path: Path


class DirClips:
    """A small ClipSource: clips under ``root/<clip id>/`` as real age files plus the device-signed
    clip manifest, written by the same code as the device store's."""

    def __init__(self, root: Path, device: DeviceIdentity) -> None:
        self.root = root
        self.device = device
        self.clips: dict[str, Clip] = {}
        self.segments: dict[str, Segment] = {}
        self.holds: dict[str, tuple[str, float]] = {}
        # What the device's audit log sealed each clip with (``clip.sealed``): the manifest hash
        # as the clip was written, whatever the manifest file holds later.
        self.seals: dict[str, str] = {}

    def add_clip(
        self,
        clip_id: str,
        camera: str,
        start_s: int,
        payloads: list[bytes],
        recipients: list[age.Recipient],
        *,
        duration_s: int = 2,
    ) -> list[Segment]:
        directory = self.root / clip_id
        directory.mkdir(parents=True)
        made = []
        for index, payload in enumerate(payloads):
            path = directory / f"seg-{index:06d}.ts.age"
            with open(path, "wb") as f:
                enc = age.encrypt(recipients, payload, f)
            segment = Segment(
                segment_id=f"{clip_id}.{index:06d}",
                clip_id=clip_id,
                camera=camera,
                index=index,
                start_s=start_s + index * duration_s,
                duration_s=duration_s,
                size=path.stat().st_size,
                payload_sha256=enc.payload_sha256.hex(),
                path=path,
            )
            self.segments[segment.segment_id] = segment
            made.append(segment)
        end_s = start_s + duration_s * len(payloads)
        self.clips[clip_id] = Clip(clip_id, camera, start_s, end_s)
        manifest = ClipManifest.from_seconds(
            device_id=self.device.device_id,
            clip_id=clip_id,
            camera=camera,
            start_s=start_s,
            end_s=end_s,
            segments=[(s.index, s.start_s, s.duration_s, s.size, s.payload_sha256) for s in made],
        )
        signed = manifest.sign(self.device.private_key)
        (directory / MANIFEST_NAME).write_bytes(signed)
        self.seals[clip_id] = hashlib.sha256(signed).hexdigest()
        return made

    # -- the ClipSource protocol --
    def list_clips(self, *, camera=None, start_s=None, end_s=None):
        return [
            c
            for c in self.clips.values()
            if (camera is None or c.camera == camera)
            and (start_s is None or c.end_s > start_s)
            and (end_s is None or c.start_s < end_s)
        ]

    def list_segments(self, clip_id):
        return sorted(
            (s for s in self.segments.values() if s.clip_id == clip_id), key=lambda s: s.index
        )

    def segment(self, segment_id):
        return self.segments[segment_id]

    def segment_path(self, segment_id):
        return self.segments[segment_id].path

    def manifest_bytes(self, clip_id):
        return (self.root / clip_id / MANIFEST_NAME).read_bytes()

    def hold(self, clip_id, hold_id, until_s):
        self.holds[hold_id] = (clip_id, until_s)

    def release_hold(self, hold_id):
        self.holds.pop(hold_id, None)


@dataclass
class Owners:
    """The device's paired owners, as the hub will supply them."""

    paired: list[PairedOwner]

    def __call__(self) -> list[PairedOwner]:
        return list(self.paired)

    def remove(self, key_id: str) -> None:
        self.paired = [
            PairedOwner(o.key_id, o.signing_public, removed=o.removed or o.key_id == key_id)
            for o in self.paired
        ]


IDENTITY = RequesterIdentity(
    name="Officer Dana Reyes",
    organisation="Springfield Police Department",
    kind="local_agency",
    jurisdiction="Springfield, IL",
    contact="records@springfield-pd.example",
)


def make_request(requester: KeyBundle, **overrides) -> str:
    """A valid signed request at NOW; keyword arguments override fields."""
    fields = {
        "identity": IDENTITY,
        "camera": "front",
        "window_start_s": NOW - 3 * HOUR,
        "window_end_s": NOW - 2 * HOUR,
        "category": "package_theft",
        "case_reference": "SPD-2026-004211",
        "reason": "A parcel was taken from the porch of the house next door.",
        "legal_basis": "voluntary",
        "issued_at_s": NOW - 60,
        "expires_at_s": NOW + 7 * 86400,
        "nonce": hashlib.sha256(os.urandom(16)).hexdigest()[:24],
    }
    fields.update(overrides)
    identity = fields.pop("identity")
    return sign_request(requester.signing_key, str(requester.recipient), identity, **fields)


@dataclass
class World:
    """A device (clip store, audit log, consent desk) with one clip of six segments."""

    clips: DirClips
    audit: object
    desk: object
    owners: Owners
    segments: list[Segment]
    plaintexts: dict[str, bytes]
    db_path: Path


def build_world(
    tmp_path: Path, device: DeviceIdentity, owner_bundles: list[KeyBundle], owners: Owners
) -> World:
    from consent.audit import AuditLog, audit_origin
    from consent.desk import ConsentDesk

    clips = DirClips(tmp_path / "clips", device)
    plaintexts = {}
    payloads = []
    for index in range(6):
        data = f"SEGMENT-{index}-PLAINTEXT|".encode() * 40 + os.urandom(3000)
        payloads.append(data)
    segments = clips.add_clip(
        "clip-0001",
        "front",
        NOW - 3 * HOUR + 600,
        payloads,
        [b.recipient for b in owner_bundles],
    )
    for segment, data in zip(segments, payloads, strict=True):
        plaintexts[segment.segment_id] = data
    db_path = tmp_path / "doorward.db"
    audit = AuditLog(
        db_path,
        signer=device.private_key,
        origin=audit_origin(device.public_key),
        clock=lambda: NOW,
    )
    desk = ConsentDesk(db_path, device=device, clips=clips, audit=audit, owners=owners)
    return World(clips, audit, desk, owners, segments, plaintexts, db_path)


def approve_first_segment(
    world: World, owner: KeyBundle, device: DeviceIdentity, *, token_id: str, **options: Any
) -> tuple[ConsentRequest, Approval]:
    """The owner approves, for an hour, the first segment of the first clip the one pending
    request covers, as the phone lists it from the device's store; ``options`` go to
    ``consent.owner.approve`` (a checkpoint, disclosures)."""
    footage = StoreFootage(world.clips)
    [pending] = consent.owner.list_pending(world.desk.pending_requests(NOW), footage, NOW)  # type: ignore[attr-defined]
    return pending.request, consent.owner.approve(
        owner.signing_key,
        [owner.age_identity],
        pending.request,
        [pending.clips[0][1][0]],
        footage,
        device_id=device.device_id,
        device_key=device.public_key,
        sealed=world.clips.seals,
        token_id=token_id,
        now=NOW,
        expires_at_s=NOW + 3600,
        **options,
    )


def released_bundle(
    desk: Any, request: ConsentRequest, approval: Approval, requester: KeyBundle
) -> io.BytesIO:
    """The device records the owner's approval at NOW and serves the requester its release
    bundle: the bundle's bytes, read from the start."""
    desk.record_approval(request.request_id, approval.token, approval.manifest, NOW)
    desk.authorize_download(approval.release_id, requester.key_id, NOW)
    bundle = io.BytesIO()
    desk.write_bundle(approval.release_id, bundle)
    bundle.seek(0)
    return bundle
