"""A release of real MPEG-TS segments joins into one file that a decoder plays through."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np

import consent.owner
from consent.clips import StoreFootage
from consent.desk import ConsentDesk
from consent.requester import open_bundle
from crypto.keys import DeviceIdentity, KeyBundle
from tests.consent.kit import HOUR, NOW, DirClips, Owners, make_request

FPS = 10
FRAMES_PER_SEGMENT = 5


def _ts_segment(index: int) -> bytes:
    """One MPEG-TS segment of 5 frames starting at a keyframe, timestamps continuing the clip."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(FRAMES_PER_SEGMENT)}
        for n in range(FRAMES_PER_SEGMENT):
            shade = (index * 40 + n * 8) % 255
            frame = av.VideoFrame.from_ndarray(
                np.full((64, 64, 3), shade, dtype=np.uint8), format="rgb24"
            )
            frame.pts = index * FRAMES_PER_SEGMENT + n
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def test_released_ts_segments_join_into_a_playable_file(
    tmp_path: Path,
    device: DeviceIdentity,
    owner: KeyBundle,
    requester: KeyBundle,
    owners: Owners,
) -> None:
    from consent.audit import AuditLog, audit_origin

    clips = DirClips(tmp_path / "clips", device)
    segments = clips.add_clip(
        "clip-ts",
        "front",
        NOW - 3 * HOUR + 60,
        [_ts_segment(i) for i in range(4)],
        [owner.recipient],
    )
    db = tmp_path / "doorward.db"
    audit = AuditLog(
        db, signer=device.private_key, origin=audit_origin(device.public_key), clock=lambda: NOW
    )
    desk = ConsentDesk(db, device=device, clips=clips, audit=audit, owners=owners)
    desk.submit_request(make_request(requester), NOW)
    [request] = desk.pending_requests(NOW)
    footage = StoreFootage(clips)
    approval = consent.owner.approve(
        owner.signing_key,
        [owner.age_identity],
        request,
        segments[1:4],
        footage,
        device_id=device.device_id,
        device_key=device.public_key,
        sealed=clips.seals,
        token_id="rel-ts",
        now=NOW,
        expires_at_s=NOW + HOUR,
    )
    desk.record_approval(request.request_id, approval.token, approval.manifest, NOW)
    desk.authorize_download("rel-ts", requester.key_id, NOW)
    bundle = io.BytesIO()
    desk.write_bundle("rel-ts", bundle)
    bundle.seek(0)

    report = open_bundle(bundle, [requester.age_identity], tmp_path / "out")
    assert report.ok
    with av.open(str(report.video)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 3 * FRAMES_PER_SEGMENT
    # Segments 1, 2 and 3 in order (segment 0, shade 0, was not released).
    shades = [int(frames[k].to_ndarray(format="rgb24").mean()) for k in (0, 5, 10)]
    assert all(abs(got - want) <= 3 for got, want in zip(shades, [40, 80, 120], strict=True))
