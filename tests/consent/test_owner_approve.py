"""The phone against a compromised device: approval re-wraps a file key only after proving it opens
the payload of the segment approved, as the device signed it; any lie refuses the whole approval
and nothing is signed."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import pytest

import consent.owner
from consent._release_manifest import parse_release_manifest
from consent.clip_manifest import ClipManifest
from consent.clips import ClipLike, SegmentLike, StoreFootage
from consent.desk import ConsentDesk
from consent.errors import ConsentError
from consent.models import ConsentRequest, RequestStatus
from consent.owner import Approval
from consent.requester import open_bundle
from crypto import age
from crypto.keys import DeviceIdentity, KeyBundle
from tests.consent.kit import NOW, Segment, World, make_request, released_bundle


class HostileFootage:
    """A FootageIndex over the honest store that a compromised device can make lie: other bytes
    for a segment's file, other records in the listing, other clip manifests. ``seals`` is what
    the phone's verified audit log sealed each clip with (the honest manifests, unless a test
    forges a manifest the device sealed before the phone ever audited it)."""

    def __init__(self, world: World) -> None:
        self._honest = StoreFootage(world.clips)
        self.files: dict[str, bytes] = {}
        self.streams: dict[str, Callable[[], BinaryIO]] = {}
        self.listing: dict[str, Segment] = {}
        self.manifests: dict[str, bytes] = {}
        self.seals: dict[str, str] = dict(world.clips.seals)

    def forge(self, clip_id: str, manifest: bytes, *, sealed: bool = False) -> None:
        """Serve ``manifest`` for the clip; ``sealed``: the device sealed it so (it was
        compromised before the clip finished), which leaves the other checks to catch it."""
        self.manifests[clip_id] = manifest
        if sealed:
            self.seals[clip_id] = hashlib.sha256(manifest).hexdigest()

    def list_clips(
        self, *, camera: str | None = None, start_s: float | None = None, end_s: float | None = None
    ) -> Sequence[ClipLike]:
        return self._honest.list_clips(camera=camera, start_s=start_s, end_s=end_s)

    def list_segments(self, clip_id: str) -> list[SegmentLike]:
        honest = self._honest.list_segments(clip_id)
        return [self.listing.get(s.segment_id, s) for s in honest]

    def read_segment(self, segment_id: str) -> BinaryIO:
        if segment_id in self.streams:
            return self.streams[segment_id]()
        return io.BytesIO(self.file(segment_id))

    def manifest_bytes(self, clip_id: str) -> bytes:
        return self.manifests.get(clip_id) or self._honest.manifest_bytes(clip_id)

    def file(self, segment_id: str) -> bytes:
        if segment_id in self.files:
            return self.files[segment_id]
        with self._honest.read_segment(segment_id) as f:
            return f.read()


@pytest.fixture
def request_(world: World, requester: KeyBundle) -> ConsentRequest:
    desk: ConsentDesk = world.desk  # type: ignore[assignment]
    desk.submit_request(make_request(requester), NOW)
    [request] = desk.pending_requests(NOW)
    return request


def _approve(
    world: World,
    owner: KeyBundle,
    device: DeviceIdentity,
    request: ConsentRequest,
    footage: HostileFootage,
    chosen: list[SegmentLike] | None = None,
) -> Approval:
    listed = {s.segment_id: s for s in footage.list_segments("clip-0001")}
    segments = chosen if chosen is not None else [listed[s.segment_id] for s in world.segments[:3]]
    return consent.owner.approve(
        owner.signing_key,
        [owner.age_identity],
        request,
        segments,
        footage,
        device_id=device.device_id,
        device_key=device.public_key,
        sealed=footage.seals,
        token_id="rel-0001",
        now=NOW,
        expires_at_s=NOW + 86400,
    )


def _refused(
    world: World,
    owner: KeyBundle,
    device: DeviceIdentity,
    request: ConsentRequest,
    footage: HostileFootage,
    caplog: pytest.LogCaptureFixture,
    chosen: list[SegmentLike] | None = None,
) -> str:
    """Approve against the hostile footage: it must raise, sign nothing and post nothing."""
    caplog.set_level(logging.INFO, logger="consent.owner")
    with pytest.raises(ConsentError) as caught:
        _approve(world, owner, device, request, footage, chosen)
    assert not [r for r in caplog.records if r.getMessage().startswith("consent.approved")]
    desk: ConsentDesk = world.desk  # type: ignore[assignment]
    assert desk.request(request.request_id).status is RequestStatus.PENDING
    assert desk.releases_for(request.request_id) == []
    return str(caught.value)


Refused = Callable[..., str]


@pytest.fixture
def refused(
    world: World,
    owner: KeyBundle,
    device: DeviceIdentity,
    request_: ConsentRequest,
    caplog: pytest.LogCaptureFixture,
) -> Refused:
    """``_refused`` for the owner and the pending request: call it with the hostile footage
    (and the segments chosen, if not the first three)."""

    def refuse(footage: HostileFootage, chosen: list[SegmentLike] | None = None) -> str:
        return _refused(world, owner, device, request_, footage, caplog, chosen)

    return refuse


def _file(world: World, index: int) -> bytes:
    return world.segments[index].path.read_bytes()


def _resign_sealed(
    footage: HostileFootage, device: DeviceIdentity, payloads: dict[int, str]
) -> None:
    """What a device holding its key does: re-sign the clip manifest with ``payloads`` (entry
    position -> payload hash) in place of those entries' own, sealed so (it was compromised
    before the clip finished)."""
    signed = ClipManifest.verify(footage.manifest_bytes("clip-0001"), device.public_key)
    entries = [
        dataclasses.replace(e, payload_sha256=payloads.get(i, e.payload_sha256))
        for i, e in enumerate(signed.segments)
    ]
    forged = dataclasses.replace(signed, segments=tuple(entries))
    footage.forge("clip-0001", forged.sign(device.private_key), sealed=True)


def _spliced(world: World, header_of: int, payload_of: int) -> bytes:
    """Segment ``header_of``'s age header in front of segment ``payload_of``'s payload."""
    header, _ = age.split_header(_file(world, header_of))
    _, payload = age.split_header(_file(world, payload_of))
    return header + payload


def test_the_honest_device_still_gets_a_release_the_requester_verifies(
    world: World,
    owner: KeyBundle,
    requester: KeyBundle,
    device: DeviceIdentity,
    request_: ConsentRequest,
    tmp_path: Path,
) -> None:
    footage = HostileFootage(world)
    approval = _approve(world, owner, device, request_, footage)
    bundle = released_bundle(world.desk, request_, approval, requester)
    report = open_bundle(
        bundle,
        [requester.age_identity],
        tmp_path / "out",
        requester_key_id=requester.key_id,
        device_key=device.public_key,
    )
    assert report.ok
    expected = b"".join(world.plaintexts[s.segment_id] for s in world.segments[:3])
    assert Path(report.video or "").read_bytes() == expected


def test_a_header_swapped_in_from_another_segment_is_refused(
    world: World, refused: Refused
) -> None:
    # Segment 1 is asked for; the device answers with segment 5's header (5 is not approved).
    footage = HostileFootage(world)
    footage.files[world.segments[1].segment_id] = _spliced(world, 5, 1)
    message = refused(footage)
    assert message == (
        "refusing to approve: segment 'clip-0001.000001': its payload does not open under the "
        "file key of the header the device sent (payload chunk 0 failed authentication); "
        "the device may be compromised, nothing was signed"
    )


def test_another_segments_whole_file_is_refused(world: World, refused: Refused) -> None:
    # The device serves segment 5's complete age file (header and payload) as segment 1.
    footage = HostileFootage(world)
    footage.files[world.segments[1].segment_id] = _file(world, 5)
    message = refused(footage)
    assert message.startswith(
        "refusing to approve: segment 'clip-0001.000001': its payload hashes to "
        f"{world.segments[5].payload_sha256}, but the device listed it with "
        f"{world.segments[1].payload_sha256}"
    )


def test_another_segments_payload_under_the_right_header_is_refused(
    world: World, refused: Refused
) -> None:
    footage = HostileFootage(world)
    footage.files[world.segments[1].segment_id] = _spliced(world, 1, 5)
    message = refused(footage)
    assert message.startswith(
        "refusing to approve: segment 'clip-0001.000001': its payload hashes to "
        f"{world.segments[5].payload_sha256}, but the device listed it with "
        f"{world.segments[1].payload_sha256}"
    )


def test_a_resigned_manifest_cannot_carry_another_payload_under_this_header(
    world: World, device: DeviceIdentity, refused: Refused
) -> None:
    # A device holding its key swaps the payload hashes of indexes 1 and 5 in the manifest it
    # signs and in its listing, and serves segment 5's payload behind segment 1's header: every
    # hash agrees, but the header's file key does not open that payload.
    footage = HostileFootage(world)
    seg1, seg5 = world.segments[1], world.segments[5]
    _resign_sealed(footage, device, {1: seg5.payload_sha256, 5: seg1.payload_sha256})
    footage.listing[seg1.segment_id] = dataclasses.replace(seg1, payload_sha256=seg5.payload_sha256)
    footage.files[seg1.segment_id] = _spliced(world, 1, 5)
    message = refused(footage)
    assert message == (
        "refusing to approve: segment 'clip-0001.000001': its payload does not open under the "
        "file key of the header the device sent (payload chunk 0 failed authentication); "
        "the device may be compromised, nothing was signed"
    )


def test_a_listed_payload_hash_that_lies_is_refused(world: World, refused: Refused) -> None:
    # The listing claims segment 5's hash for segment 1 (whose real file is served).
    footage = HostileFootage(world)
    seg1 = world.segments[1]
    footage.listing[seg1.segment_id] = dataclasses.replace(
        seg1, payload_sha256=world.segments[5].payload_sha256
    )
    message = refused(footage)
    assert message.startswith(
        f"refusing to approve: segment 'clip-0001.000001': its payload hashes to "
        f"{seg1.payload_sha256}, but the device listed it with {world.segments[5].payload_sha256}"
    )


def test_a_signed_manifest_that_claims_another_payload_is_refused(
    world: World, device: DeviceIdentity, refused: Refused
) -> None:
    # A device that holds its key re-signs the clip manifest so that index 1 names segment 5's
    # payload, lists segment 1 that way and serves segment 5's file as segment 1.
    footage = HostileFootage(world)
    seg1, seg5 = world.segments[1], world.segments[5]
    _resign_sealed(footage, device, {1: seg5.payload_sha256})
    footage.listing[seg1.segment_id] = dataclasses.replace(seg1, payload_sha256=seg5.payload_sha256)
    footage.files[seg1.segment_id] = _file(world, 5)
    message = refused(footage)
    assert message == (
        "refusing to approve: clip 'clip-0001': its signed manifest lists the payload "
        f"{seg5.payload_sha256} at indexes 1 and 5; the device may be compromised, nothing "
        "was signed"
    )


def test_a_payload_that_differs_from_the_signed_manifest_is_refused(
    world: World, refused: Refused
) -> None:
    # Listing and file agree (segment 5's bytes, relabelled as 1), but the device signed another.
    footage = HostileFootage(world)
    seg1, seg5 = world.segments[1], world.segments[5]
    footage.listing[seg1.segment_id] = dataclasses.replace(seg1, payload_sha256=seg5.payload_sha256)
    footage.files[seg1.segment_id] = _file(world, 5)
    message = refused(footage)
    assert message.startswith(
        "refusing to approve: segment 'clip-0001.000001': its payload hashes to "
        f"{seg5.payload_sha256}, but the device signed {seg1.payload_sha256} for clip "
        "'clip-0001' index 1"
    )


def test_relabelled_segments_are_refused(world: World, refused: Refused) -> None:
    # The listing swaps two segments' ids: what the owner picks as 000001 is index 2 (and the
    # device serves index 2's file under that id), all else consistent with the signed manifest.
    footage = HostileFootage(world)
    seg1, seg2 = world.segments[1], world.segments[2]
    footage.listing[seg1.segment_id] = dataclasses.replace(seg2, segment_id=seg1.segment_id)
    footage.listing[seg2.segment_id] = dataclasses.replace(seg1, segment_id=seg2.segment_id)
    footage.files[seg1.segment_id] = _file(world, 2)
    footage.files[seg2.segment_id] = _file(world, 1)
    message = refused(footage)
    assert message == (
        "refusing to approve: segment 'clip-0001.000001': the device lists it as clip "
        "'clip-0001' index 2, whose id is 'clip-0001.000002'; the device may be compromised, "
        "nothing was signed"
    )


def _relabel(
    world: World, device: DeviceIdentity, footage: HostileFootage, a: int, b: int
) -> bytes:
    """What a device holding its key does: re-sign the clip manifest with segments ``a`` and
    ``b``'s entries (size, payload hash) swapped, list them so, and serve each file under the
    other's id. Every check but the seal passes. Returns the forged manifest."""
    seg_a, seg_b = world.segments[a], world.segments[b]
    signed = ClipManifest.verify(footage.manifest_bytes("clip-0001"), device.public_key)
    entries = list(signed.segments)
    entries[a], entries[b] = (
        dataclasses.replace(entries[a], size=entries[b].size, payload_sha256=seg_b.payload_sha256),
        dataclasses.replace(entries[b], size=entries[a].size, payload_sha256=seg_a.payload_sha256),
    )
    forged = dataclasses.replace(signed, segments=tuple(entries)).sign(device.private_key)
    footage.forge("clip-0001", forged)
    for mine, theirs in ((seg_a, seg_b), (seg_b, seg_a)):
        footage.listing[mine.segment_id] = dataclasses.replace(
            mine, size=theirs.size, payload_sha256=theirs.payload_sha256
        )
        footage.files[mine.segment_id] = theirs.path.read_bytes()
    return forged


def test_a_relabelled_clip_manifest_is_refused_by_its_seal(
    world: World, device: DeviceIdentity, refused: Refused
) -> None:
    footage = HostileFootage(world)
    forged = _relabel(world, device, footage, 1, 2)
    message = refused(footage)
    assert message == (
        "refusing to approve: clip 'clip-0001': its signed manifest hashes to "
        f"{hashlib.sha256(forged).hexdigest()}, but the device sealed the clip with "
        f"{world.clips.seals['clip-0001']} in the audit log when it finished: the device "
        "re-signed its manifest since; the device may be compromised, nothing was signed"
    )


def test_without_its_seal_a_relabel_passes_every_other_check(
    world: World, owner: KeyBundle, device: DeviceIdentity, request_: ConsentRequest
) -> None:
    # Why the seal is needed: had the device sealed the relabelled manifest (compromised before
    # the clip finished), the phone would release segment 2's video as segment 1.
    footage = HostileFootage(world)
    footage.forge("clip-0001", _relabel(world, device, footage, 1, 2), sealed=True)
    segment_1 = footage.list_segments("clip-0001")[1]
    approval = _approve(world, owner, device, request_, footage, [segment_1])
    [released] = parse_release_manifest(approval.manifest).segments
    assert released.segment_id == segment_1.segment_id
    assert released.payload_sha256 == world.segments[2].payload_sha256


def test_a_clip_without_a_seal_is_refused(world: World, refused: Refused) -> None:
    footage = HostileFootage(world)
    del footage.seals["clip-0001"]  # still recording, or recorded before clips were sealed
    message = refused(footage)
    assert message == (
        "refusing to approve: clip 'clip-0001' was not sealed in the audit log this phone "
        "verified (a clip is sealed when it finishes recording; a doorbell running a doorward "
        "version from before clip sealing seals none, and seals the clips it holds once "
        "upgraded): wait until the clip finishes or the doorbell is upgraded, then run "
        "`doorward owner audit` and approve again; nothing was signed"
    )


def test_a_manifest_fetched_while_the_clip_was_recording_is_refused(
    world: World, device: DeviceIdentity, refused: Refused
) -> None:
    # The footage was fetched before the clip finished; the audit read afterwards has its seal.
    footage = HostileFootage(world)
    signed = ClipManifest.verify(footage.manifest_bytes("clip-0001"), device.public_key)
    footage.forge("clip-0001", dataclasses.replace(signed, end_ms=None).sign(device.private_key))
    message = refused(footage)
    assert message == (
        "refusing to approve: clip 'clip-0001' was still recording when its footage was fetched; "
        "approve again now that it has finished; nothing was signed"
    )


def test_a_segment_listed_twice_is_refused(world: World, refused: Refused) -> None:
    footage = HostileFootage(world)
    listed = footage.list_segments("clip-0001")
    message = refused(footage, [listed[1], listed[2], listed[1]])
    assert message == (
        "refusing to approve: segment 'clip-0001.000001' is chosen twice; nothing was signed"
    )


def test_a_clip_manifest_with_a_bad_signature_is_refused(
    world: World, device: DeviceIdentity, refused: Refused
) -> None:
    footage = HostileFootage(world)
    other = DeviceIdentity.generate()
    signed = ClipManifest.verify(footage.manifest_bytes("clip-0001"), device.public_key)
    footage.manifests["clip-0001"] = signed.sign(other.private_key)
    message = refused(footage)
    assert message.startswith(
        "refusing to approve: clip 'clip-0001': its manifest is not signed by the device key "
        "pinned at pairing"
    )


def test_another_clips_manifest_is_refused(
    world: World, device: DeviceIdentity, refused: Refused
) -> None:
    footage = HostileFootage(world)
    signed = ClipManifest.verify(footage.manifest_bytes("clip-0001"), device.public_key)
    footage.manifests["clip-0001"] = dataclasses.replace(signed, clip_id="clip-0002").sign(
        device.private_key
    )
    message = refused(footage)
    assert message == (
        "refusing to approve: clip 'clip-0001': the device sent the signed manifest of clip "
        "'clip-0002'; the device may be compromised, nothing was signed"
    )


class _Endless(io.RawIOBase):
    """A segment file that never ends: ``data``, then zeros forever."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        view = memoryview(buffer).cast("B")
        part = self._data[self.served : self.served + len(view)]
        view[: len(part)] = part
        view[len(part) :] = bytes(len(view) - len(part))
        self.served += len(view)
        return len(view)


def test_a_segment_file_that_never_ends_is_refused_after_its_signed_size(
    world: World, refused: Refused
) -> None:
    footage = HostileFootage(world)
    seg1 = world.segments[1]
    endless = _Endless(_file(world, 1))
    footage.streams[seg1.segment_id] = lambda: io.BufferedReader(endless)
    message = refused(footage)
    assert message == (
        "refusing to approve: segment 'clip-0001.000001': its file is larger than the "
        f"{seg1.size} bytes the device signed; the device may be compromised, nothing was signed"
    )
    assert endless.served <= seg1.size + 2 * io.DEFAULT_BUFFER_SIZE + 64 * 1024


def test_a_segment_the_owner_cannot_open_is_refused(
    world: World,
    device: DeviceIdentity,
    request_: ConsentRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stranger = KeyBundle.generate("x25519")  # signs, but holds no identity the files are for
    message = _refused(world, stranger, device, request_, HostileFootage(world), caplog)
    assert message == (
        "refusing to approve: segment 'clip-0001.000000': none of your age identities opens its "
        "header (was it recorded before this phone was paired?); nothing was signed"
    )


def test_the_device_key_must_be_the_device_ids(
    world: World, owner: KeyBundle, request_: ConsentRequest
) -> None:
    other = DeviceIdentity.generate()
    with pytest.raises(ConsentError) as caught:
        consent.owner.approve(
            owner.signing_key,
            [owner.age_identity],
            request_,
            world.segments[:1],
            HostileFootage(world),
            device_id="0123456789abcdef",
            device_key=other.public_key,
            sealed=world.clips.seals,
            token_id="rel-0001",
            now=NOW,
            expires_at_s=NOW + 86400,
        )
    assert str(caught.value) == "the device key given is not the key of device '0123456789abcdef'"
