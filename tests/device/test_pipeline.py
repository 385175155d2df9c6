"""The camera pipeline end to end: simulated camera → encoder → segments → age → store."""

from __future__ import annotations

import asyncio
import io
import itertools
import subprocess
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from crypto import age
from crypto.errors import NoIdentityMatched
from device import (
    CameraPipeline,
    ClipFinished,
    ClipStarted,
    ClipStore,
    DeviceEvent,
    DoorbellPressed,
    MotionConfig,
    MotionDetector,
    MotionResult,
    PipelineStats,
    RecorderConfig,
    RecordingError,
    SegmentRecord,
    SegmentWritten,
)
from device.harness import FaultyStore, StorageFaults
from hardware import EncodedPacket, Frame, SoftButton, StreamInfo
from hardware.sim import strip_rows
from hardware.sim.strip import draw_strip
from tests.device.kit import (
    T0,
    camera,
    decode_counters,
    decrypt_segments,
    files_under,
    run_pipeline,
    sync_runs,
)

pytestmark = pytest.mark.timeout(60)


def age_cli_decrypt(
    age_cli: str, owner: age.X25519Identity, tmp_path: Path, segments: list[SegmentRecord]
) -> list[bytes]:
    key = tmp_path / "owner.key"
    key.write_text(owner.to_secret_string() + "\n")
    return [
        subprocess.run(
            [age_cli, "-d", "-i", str(key), str(seg.path)], capture_output=True, check=True
        ).stdout
        for seg in segments
    ]


@pytest.mark.asyncio
@pytest.mark.slow
async def test_a_pressed_clip_is_encrypted_decodable_complete_and_leaves_no_plaintext(
    store: ClipStore, owner: age.X25519Identity, tmp_path: Path, age_cli: str
) -> None:
    drops = '\n[[fault]]\nkind = "drop_frames"\nat_s = 8\nduration_s = 1\nevery = 3\n'
    source = camera(16, presses=[6.0], extra=drops)
    events: list[DeviceEvent] = []
    delivered: list[int] = []
    raw_rows: list[bytes] = []

    def seen(frame: Frame, _result: object) -> None:
        delivered.append(frame.index)
        if frame.index == 100:
            raw_rows.append(frame.y[150, 40:104].tobytes())

    pipeline = CameraPipeline(
        "front",
        source,
        store,
        lambda: [owner.recipient()],
        on_event=events.append,
        on_frame=seen,
        button=source.button,
    )
    stats = await pipeline.run()

    (clip,) = store.list_clips()
    assert [type(e) for e in events if not isinstance(e, SegmentWritten)] == [
        DoorbellPressed,
        ClipStarted,
        ClipFinished,
    ]
    press_s = next(e.pts_s for e in events if isinstance(e, DoorbellPressed))
    assert 6.0 <= press_s < 6.2
    assert clip.finished
    assert stats.segments == clip.segment_count == len(store.list_segments(clip.clip_id))
    assert stats.dropped_frames == 5  # every third frame of 8.0-9.0 s at 15 fps

    plaintexts = decrypt_segments(store, clip.clip_id, owner)
    counters: list[int | None] = []
    for plaintext in plaintexts:
        seg_counters = decode_counters(plaintext)  # each segment decodes on its own
        assert seg_counters[0] is not None
        counters += seg_counters
    # Frame counters run in order; the only gaps are the frames the camera dropped.
    first = delivered.index(counters[0])
    assert counters == delivered[first : first + len(counters)]
    # Full pre-roll before the press, post-roll after it; lengths agree within one segment.
    fps = 15
    assert counters[0] / fps <= press_s - 5.0
    assert counters[-1] / fps >= press_s + 5.0 - 1 / fps
    recorded_s = (counters[-1] - counters[0] + 1) / fps
    assert abs(recorded_s - (clip.end_s - clip.start_s)) < 1 / fps + 1e-6
    assert abs(recorded_s - 10.0) <= 2.0
    assert store.list_segments(clip.clip_id)[0].start_s == T0 + counters[0] / fps

    # The age CLI decrypts the very same segments with the owner's X25519 identity.
    assert (
        age_cli_decrypt(age_cli, owner, tmp_path, store.list_segments(clip.clip_id)) == plaintexts
    )

    # No file under the data directory holds MPEG-TS or plaintext picture bytes.
    assert sync_runs(plaintexts[0]) > 100  # the scanner does find plaintext MPEG-TS
    probes = [raw_rows[0]] + [p[len(p) // 2 : len(p) // 2 + 48] for p in plaintexts]
    scanned = files_under(store.data_dir)
    assert any(p.name == "doorward.db" for p in scanned)
    for path in scanned:
        data = path.read_bytes()
        assert sync_runs(data) == 0, path
        for probe in probes:
            assert probe not in data, path


@pytest.mark.asyncio
@pytest.mark.slow
async def test_motion_starts_a_clip_with_its_pre_roll(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    actor = (
        '\n[[actor]]\nkind = "person"\nenter_s = 7\nleave_s = 10\n'
        "path = [[0.1, 0.9], [0.9, 0.9]]\nsize = 0.6\n"
    )
    source = camera(18, extra=actor)
    top = strip_rows(320) / 240
    strip_mask = ((0.0, 0.0), (1.0, 0.0), (1.0, top), (0.0, top))
    detector = MotionDetector(MotionConfig(masks=(strip_mask,)), 320, 240)
    truth: list[int] = []
    pipeline = CameraPipeline(
        "front",
        source,
        store,
        lambda: [owner.recipient()],
        detector=detector,
        on_frame=lambda frame, _r: truth.append(frame.index) if frame.truth else None,
    )
    await pipeline.run()
    (clip,) = store.list_clips()
    counters = [c for p in decrypt_segments(store, clip.clip_id, owner) for c in decode_counters(p)]
    assert counters[0] <= truth[0] - 5 * 15
    assert counters[-1] >= truth[-1]


class PacketCamera:
    """An H.264 camera of the test's own: x264 settings unlike ours, packets kept for comparison."""

    name = "packets"

    def __init__(
        self,
        seconds: float,
        fps: int = 15,
        width: int = 320,
        height: int = 240,
        reset_at: int = 0,
        join_at: int = 0,
        gop: int = 0,
    ) -> None:
        self._reset_at = reset_at  # from this frame on, timestamps restart at 0 (a reconnect)
        self._join_at = join_at  # frames before this are encoded but not delivered (mid-GOP join)
        self.info = StreamInfo(width, height, Fraction(fps), "h264")
        self._count = round(seconds * fps)
        self.sent: dict[int, bytes] = {}
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base, ctx.framerate, ctx.gop_size = Fraction(1, fps), Fraction(fps), gop or fps
        ctx.max_b_frames = 0
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "38"}
        self._ctx = ctx
        self._rng = np.random.default_rng(3)

    async def frames(self) -> AsyncIterator[Frame]:
        fps = int(self.info.fps)
        w, h = self.info.width, self.info.height
        for index in range(self._count):
            y = self._rng.integers(40, 200, (h, w), dtype=np.uint8)
            draw_strip(y, index, index * 1000 // fps)
            u = np.full((h // 2, w // 2), 128, np.uint8)
            picture = av.VideoFrame.from_ndarray(
                np.concatenate([y, u.reshape(-1, w)]), format="yuv420p"
            )
            picture.pts = index
            (out,) = self._ctx.encode(picture)
            self.sent[index] = bytes(out)
            ts = index - self._reset_at if 0 < self._reset_at <= index else index
            packet = EncodedPacket(bytes(out), ts, ts, Fraction(1, fps), out.is_keyframe)
            if index < self._join_at:
                continue
            yield Frame(index, index / fps, T0 + index / fps, y, u, u.copy(), packet=packet)

    async def close(self) -> None:
        return None


@pytest.mark.asyncio
async def test_h264_sources_are_remuxed_not_reencoded(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    source = PacketCamera(9)
    button = SoftButton()
    pipeline = CameraPipeline(
        "door",
        source,
        store,
        lambda: [owner.recipient()],
        button=button,
        config=RecorderConfig(pre_roll_s=2, post_roll_s=2),
        on_frame=lambda frame, _r: button.press(frame.pts_s) if frame.index == 60 else None,
    )
    stats = await pipeline.run()
    assert (stats.encoded_frames, stats.remuxed_packets) == (0, 135)
    (clip,) = store.list_clips()
    demuxed: list[bytes] = []
    for plaintext in decrypt_segments(store, clip.clip_id, owner):
        with av.open(io.BytesIO(plaintext)) as container:
            demuxed += [bytes(p) for p in container.demux(video=0) if p.size]
    counters = [c for p in decrypt_segments(store, clip.clip_id, owner) for c in decode_counters(p)]
    assert counters == list(range(counters[0], counters[0] + len(demuxed)))
    for index, data in zip(counters, demuxed, strict=True):
        assert index is not None
        # The TS muxer may put an access unit delimiter in front; the camera's bytes are intact.
        assert data.endswith(source.sent[index])


@pytest.mark.asyncio
async def test_a_source_clock_that_restarts_mid_clip_is_rebased(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    source = PacketCamera(6, reset_at=40)
    button = SoftButton()
    pipeline = CameraPipeline(
        "door",
        source,
        store,
        lambda: [owner.recipient()],
        button=button,
        config=RecorderConfig(pre_roll_s=1, post_roll_s=4),
        on_frame=lambda frame, _r: button.press(frame.pts_s) if frame.index == 20 else None,
    )
    stats = await pipeline.run()
    assert stats.errors == 0
    (clip,) = store.list_clips()
    counters = [c for p in decrypt_segments(store, clip.clip_id, owner) for c in decode_counters(p)]
    # One clip across the reset, every frame in order.
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    assert counters[0] < 40 < counters[-1]


@pytest.mark.asyncio
async def test_a_trigger_before_the_first_keyframe_opens_the_clip_at_that_keyframe(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    source = PacketCamera(3, join_at=5)  # delivery starts mid-GOP; the next keyframe is frame 15
    button = SoftButton()
    button.press(0.0)
    events: list[DeviceEvent] = []
    pipeline = CameraPipeline(
        "door",
        source,
        store,
        lambda: [owner.recipient()],
        button=button,
        on_event=events.append,
        config=RecorderConfig(post_roll_s=1),
    )
    await pipeline.run()
    assert not [e for e in events if isinstance(e, RecordingError)]
    (clip,) = store.list_clips()
    counters = [c for p in decrypt_segments(store, clip.clip_id, owner) for c in decode_counters(p)]
    assert counters[0] == 15
    assert counters == list(range(15, 15 + len(counters)))


@pytest.mark.asyncio
@pytest.mark.slow
async def test_a_source_without_keyframes_still_gets_bounded_segments(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    source = PacketCamera(20, gop=1000)  # one keyframe, then never again
    button = SoftButton()
    button.press(0.0)
    pipeline = CameraPipeline(
        "door",
        source,
        store,
        lambda: [owner.recipient()],
        button=button,
        config=RecorderConfig(post_roll_s=15),
    )
    await pipeline.run()
    (clip,) = store.list_clips()
    segments = store.list_segments(clip.clip_id)
    # 0 to ~15.2 s (press near 0, post-roll 15 s), cut by force at 4 x segment_s.
    assert [round(s.duration_s) for s in segments] == [8, 7]
    whole = b"".join(decrypt_segments(store, clip.clip_id, owner))
    counters = decode_counters(whole)
    assert counters == list(range(len(counters)))
    assert len(counters) >= 15 * 15


@pytest.mark.asyncio
async def test_privacy_zones_are_black_in_the_recording_and_force_an_encode(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    source = camera(4, presses=[0.5], h264=True)
    zone = ((0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0))
    config = RecorderConfig(privacy_zones=(zone,), post_roll_s=1)
    stats = await run_pipeline(source, store, owner, config=config).run()
    assert stats.remuxed_packets == 0
    assert stats.encoded_frames == 60
    (clip,) = store.list_clips()
    (plaintext, *_) = decrypt_segments(store, clip.clip_id, owner)
    with av.open(io.BytesIO(plaintext)) as container:
        for frame in container.decode(video=0):
            luma = frame.to_ndarray(format="gray")
            assert luma[124:236, 4:156].max() <= 20  # inside the zone: black
            assert luma[124:236, 164:316].std() > 5  # outside: the scene


@pytest.mark.asyncio
@pytest.mark.slow
async def test_long_events_split_at_max_clip_length_without_losing_a_frame(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    source = camera(26, presses=[float(t) for t in range(1, 25)])
    config = RecorderConfig(max_clip_s=10, post_roll_s=1)
    await run_pipeline(source, store, owner, config=config).run()
    clips = store.list_clips()
    assert len(clips) == 3
    runs = [
        [c for p in decrypt_segments(store, clip.clip_id, owner) for c in decode_counters(p)]
        for clip in clips
    ]
    for before, after in itertools.pairwise(runs):
        assert after[0] == before[-1] + 1
        assert after[0] % 30 == 0  # each clip starts at one of the camera's keyframes


@pytest.mark.asyncio
async def test_cancelling_closes_the_open_clip(store: ClipStore, owner: age.X25519Identity) -> None:
    source = camera(60, presses=[1.0, 20.0, 40.0])
    written: list[SegmentWritten] = []

    def on_event(event: DeviceEvent) -> None:
        if isinstance(event, SegmentWritten):
            written.append(event)
            if len(written) == 2:
                task.cancel()

    pipeline = CameraPipeline(
        "front", source, store, lambda: [owner.recipient()], on_event=on_event, button=source.button
    )
    task = asyncio.create_task(pipeline.run())
    with pytest.raises(asyncio.CancelledError):
        await task
    (clip,) = store.list_clips()
    assert clip.finished
    assert clip.segment_count >= 2
    assert not list(store.data_dir.rglob("*.tmp"))


@pytest.mark.asyncio
async def test_no_owner_means_an_error_event_not_a_crash(store: ClipStore) -> None:
    source = camera(4, presses=[1.0])
    events: list[DeviceEvent] = []
    pipeline = CameraPipeline(
        "front", source, store, list, on_event=events.append, button=source.button
    )
    stats = await pipeline.run()
    errors = [e for e in events if isinstance(e, RecordingError)]
    assert errors[0] == RecordingError(
        "front", "camera front: no owner recipients to encrypt to; pair an owner's phone"
    )
    assert stats.errors >= 1
    assert store.list_clips() == []


@pytest.mark.asyncio
@pytest.mark.slow
async def test_a_refusal_is_reported_once_per_event(store: ClipStore) -> None:
    # Two separate events (presses 15 s apart, post-roll 5 s), no owner paired for either: the
    # retries at later keyframes of one event stay quiet, the next event is reported again.
    source = camera(24, presses=[1.0, 3.0, 5.0, 17.0])
    events: list[DeviceEvent] = []
    pipeline = CameraPipeline(
        "front", source, store, list, on_event=events.append, button=source.button
    )
    stats = await pipeline.run()
    errors = [e for e in events if isinstance(e, RecordingError)]
    assert len(errors) == 2
    assert stats.errors == 2
    assert store.list_clips() == []


@pytest.mark.asyncio
async def test_an_owner_paired_during_an_event_gets_it_from_the_next_keyframe(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    owners: list[age.Recipient] = []
    events: list[DeviceEvent] = []

    def on_event(event: DeviceEvent) -> None:
        events.append(event)
        if isinstance(event, RecordingError) and not owners:
            owners.append(owner.recipient())  # the first phone pairs while the visitor waits

    source = camera(12, presses=[1.0, 4.0, 7.0])
    pipeline = CameraPipeline(
        "front", source, store, lambda: list(owners), on_event=on_event, button=source.button
    )
    await pipeline.run()
    errors = [e for e in events if isinstance(e, RecordingError)]
    assert len(errors) == 1
    (clip,) = store.list_clips()
    assert clip.finished
    segments = store.list_segments(clip.clip_id)
    counters = [
        c
        for seg in segments
        for c in decode_counters(age.decrypt_bytes([owner], seg.path.read_bytes()))
    ]
    # Recording resumed at the first keyframe after the refusal (keyframes every 2 s) and ran
    # without a gap to the end of the post-roll after the last press.
    assert counters == list(range(counters[0], counters[-1] + 1))
    assert counters[0] <= 2 * 15  # 15 fps
    assert counters[-1] >= 11 * 15


@pytest.mark.asyncio
@pytest.mark.slow
async def test_segments_follow_the_current_owners(store: ClipStore) -> None:
    phone = age.HybridIdentity.generate()  # the default, post-quantum owner
    old_phone = age.HybridIdentity.generate()
    owners: list[age.Recipient] = [phone.recipient(), old_phone.recipient()]

    def on_event(event: DeviceEvent) -> None:
        if isinstance(event, SegmentWritten) and event.index == 1:
            del owners[1]  # an owner is removed mid-clip

    source = camera(12, presses=[0.5, 5.0])
    pipeline = CameraPipeline(
        "front", source, store, lambda: list(owners), on_event=on_event, button=source.button
    )
    await pipeline.run()
    (clip,) = store.list_clips()
    segments = store.list_segments(clip.clip_id)
    assert len(segments) == 6  # pre-roll from 0, presses at 0.5 and 5 s, post-roll to ~10.1 s
    for seg in segments:
        assert decode_counters(age.decrypt_bytes([phone], seg.path.read_bytes()))
    # Segment 2 was opened as segment 1 closed, before the event reached the owner list.
    for seg in segments[:3]:
        assert decode_counters(age.decrypt_bytes([old_phone], seg.path.read_bytes()))
    for seg in segments[3:]:
        header, _payload = age.split_header(seg.path.read_bytes())
        assert age.stanza_types(header) == ("mlkem768x25519",)
        with pytest.raises(NoIdentityMatched):
            age.decrypt_bytes([old_phone], seg.path.read_bytes())


@pytest.mark.asyncio
async def test_owners_the_encryptor_refuses_give_an_error_event(store: ClipStore) -> None:
    mixed = [age.HybridIdentity.generate().recipient(), age.X25519Identity.generate().recipient()]
    source = camera(3, presses=[0.5])
    events: list[DeviceEvent] = []
    pipeline = CameraPipeline(
        "front", source, store, lambda: mixed, on_event=events.append, button=source.button
    )
    stats = await pipeline.run()
    assert [e for e in events if isinstance(e, RecordingError)] == [
        RecordingError(
            "front",
            "camera front: cannot encrypt to the owners: refusing to mix post-quantum "
            "(mlkem768x25519) and classic recipients: the file would be only as strong as the "
            "classic one; use hybrid recipients for everyone",
        )
    ]
    assert stats.errors == 1
    assert store.list_clips() == []


class _Watching(MotionDetector):
    """The real detector, noting the time of every frame it is given."""

    def __init__(self, config: MotionConfig, width: int, height: int) -> None:
        super().__init__(config, width, height)
        self.looked_at: list[float] = []
        self.answers: list[bool] = []

    def process(self, y_plane: npt.NDArray[np.uint8], pts_s: float) -> MotionResult:
        result = super().process(y_plane, pts_s)
        self.looked_at.append(pts_s)
        self.answers.append(result.motion)
        return result


async def _visit_watched(
    store: ClipStore, owner: age.X25519Identity, config: RecorderConfig | None
) -> tuple[PipelineStats, _Watching, list[int]]:
    """A 30 fps camera with a visitor from 1 s to 4 s, recorded with ``config``: the stats,
    the detector and the frame counters of the one clip recorded."""
    extra = (
        '\n[[actor]]\nid = "visitor"\nkind = "person"\nenter_s = 1\nleave_s = 4\n'
        "path = [[0.1, 0.8], [0.9, 0.8]]\n"
    )
    source = camera(6, fps=30, extra=extra)
    top = strip_rows(source.info.width) / source.info.height
    detector = _Watching(
        MotionConfig(masks=(((0.0, 0.0), (1.0, 0.0), (1.0, top), (0.0, top)),)),
        source.info.width,
        source.info.height,
    )
    pipeline = CameraPipeline(
        "front", source, store, lambda: [owner.recipient()], detector=detector, config=config
    )
    stats = await pipeline.run()
    (clip,) = store.list_clips()
    counters = [
        c
        for seg in store.list_segments(clip.clip_id)
        for c in decode_counters(age.decrypt_bytes([owner], seg.path.read_bytes()))
    ]
    return stats, detector, counters


@pytest.mark.asyncio
@pytest.mark.slow
async def test_motion_is_looked_at_no_more_than_motion_fps(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    # The detector sees every other frame (15 a second), also during the visit here; the
    # recorder still gets every frame, and the visit is recorded.
    stats, detector, counters = await _visit_watched(
        store, owner, RecorderConfig(event_motion_fps=15.0)
    )
    assert stats.frames == 180
    assert stats.analysed_frames == 90
    assert [round(t * 30) for t in detector.looked_at] == list(range(0, 180, 2))
    assert stats.encoded_frames == 180
    assert stats.motion_frames > 0
    assert counters == list(range(counters[0], counters[-1] + 1))  # every frame recorded


@pytest.mark.asyncio
@pytest.mark.slow
async def test_while_motion_is_on_the_detector_looks_at_event_motion_fps(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    # Default: 15 frames a second until motion is on, then 5 (every 6th frame) until the
    # detector says it is off, then 15 again. The visit is still recorded whole.
    stats, detector, counters = await _visit_watched(store, owner, None)
    frames = [round(t * 30) for t in detector.looked_at]
    steps = [b - a for a, b in itertools.pairwise(frames)]
    assert steps == [6 if on else 2 for on in detector.answers[:-1]]
    assert any(a == 6 and b == 2 for a, b in itertools.pairwise(steps))  # on, then off again
    assert stats.analysed_frames == len(frames) < 90
    assert stats.motion_frames > 0
    assert counters == list(range(counters[0], counters[-1] + 1))
    assert counters[0] <= 30  # the pre-roll reaches back before the visitor came in


def test_motion_fps_is_checked() -> None:
    with pytest.raises(ValueError, match=r"^motion_fps must be between 1 and 60, got 0$"):
        RecorderConfig(motion_fps=0)
    with pytest.raises(ValueError, match=r"^event_motion_fps must be between 1 and 60, got 61$"):
        RecorderConfig(event_motion_fps=61)


@pytest.mark.asyncio
@pytest.mark.parametrize("h264", [False, True])
async def test_on_capture_gets_each_frame_before_the_worker_processes_it(
    store: ClipStore, owner: age.X25519Identity, h264: bool
) -> None:
    # Live view hangs on on_capture: its picture must not wait for motion and the recording.
    source = camera(2, fps=10, h264=h264)
    captured: list[tuple[int, int]] = []  # (index, frames the worker had processed by then)
    processed: list[int] = []
    pipeline = CameraPipeline(
        "front",
        source,
        store,
        lambda: [owner.recipient()],
        on_capture=lambda frame: captured.append((frame.index, pipeline.stats.frames)),
        on_frame=lambda frame, _result: processed.append(frame.index),
    )
    stats = await pipeline.run()
    assert [index for index, _ in captured] == processed == list(range(20))
    assert stats.frames == 20
    assert all(done <= index for index, done in captured)


class _HandCamera:
    """A raw camera the test feeds frame by frame (``None`` ends it)."""

    info = StreamInfo(64, 48, Fraction(10), None)
    name = "hand"

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Frame | None] = asyncio.Queue()

    async def close(self) -> None:
        self.queue.put_nowait(None)

    async def frames(self) -> AsyncIterator[Frame]:
        while (frame := await self.queue.get()) is not None:
            yield frame

    def put(self, index: int) -> None:
        y = np.full((48, 64), index % 200, dtype=np.uint8)
        uv = np.full((24, 32), 128, dtype=np.uint8)
        self.queue.put_nowait(Frame(index, index / 10, T0 + index / 10, y, uv, uv.copy()))


async def _until(condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` came true, polling the loop; gives up after about 20 s (a guard
    against waiting forever, not a measure of speed)."""
    for _ in range(2000):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


@pytest.mark.asyncio
async def test_frames_reach_on_capture_while_the_worker_is_held_up(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    # A recording worker stuck on a slow disk (or a slow encode on a busy box) must not make
    # live view late: up to a few frames go on reaching on_capture meanwhile.
    source = _HandCamera()
    faults = StorageFaults()
    button = SoftButton()
    button.press(at_s=0.0)  # a clip from the start: the worker soon writes a segment
    captured: list[int] = []
    processed: list[int] = []
    pipeline = CameraPipeline(
        "front",
        source,
        FaultyStore(store, faults),
        lambda: [owner.recipient()],
        config=RecorderConfig(segment_s=1.0, keyframe_interval_s=1.0, post_roll_s=0.5),
        on_capture=lambda frame: captured.append(frame.index),
        on_frame=lambda frame, _result: processed.append(frame.index),
        button=button,
    )
    faults.block()
    task = asyncio.ensure_future(pipeline.run())
    try:
        index = 0
        while not faults.waiting.is_set():  # one frame at a time until a write is held
            assert index < 100, "no segment write was ever held"
            source.put(index)
            index += 1
            fed = index

            def done(fed: int = fed) -> bool:
                return len(processed) == fed or faults.waiting.is_set()

            assert await _until(done)
        held = processed[:]
        for later in range(index, index + 3):
            source.put(later)
        assert await _until(lambda: len(captured) == index + 3), captured
        assert processed == held  # still held: these frames reached live view first
    finally:
        faults.unblock()
    source.queue.put_nowait(None)
    stats = await task
    assert processed == captured == list(range(index + 3))
    assert stats.frames == index + 3
