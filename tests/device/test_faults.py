"""Storage faults: a full disk degrades recording without a crash or a lost held clip, and one
camera's stalled disk does not hold up another camera."""

from __future__ import annotations

import asyncio

import pytest

from crypto import age
from device import (
    CameraPipeline,
    ClipStore,
    DeviceEvent,
    RecorderConfig,
    RecordingError,
)
from device.harness import FaultyStore, StorageFaults
from hardware import Frame
from tests.device.kit import T0, camera, decode_counters, decrypt_segments, write_clip

pytestmark = pytest.mark.timeout(60)

FOREVER = 4_000_000_000.0  # a hold until 2096


@pytest.mark.asyncio
async def test_disk_full_once_evicts_the_oldest_unheld_clip_and_retries(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    held = write_clip(store, owner, start_s=T0 - 2000)
    old = write_clip(store, owner, start_s=T0 - 1000)
    store.hold(held, "release-1", FOREVER)
    faults = StorageFaults()
    faults.fail_next_writes(1)
    source = camera(6, presses=[1.0])
    events: list[DeviceEvent] = []
    pipeline = CameraPipeline(
        "front",
        source,
        FaultyStore(store, faults),
        lambda: [owner.recipient()],
        on_event=events.append,
        button=source.button,
        config=RecorderConfig(post_roll_s=1),
    )
    stats = await pipeline.run()
    assert faults.injected_failures == 1
    assert not [e for e in events if isinstance(e, RecordingError)]
    clips = store.list_clips()
    assert clips[0].clip_id == held
    assert old not in [c.clip_id for c in clips]
    (new,) = clips[1:]
    counters = [c for p in decrypt_segments(store, new.clip_id, owner) for c in decode_counters(p)]
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    assert stats.errors == 0


@pytest.mark.asyncio
async def test_a_disk_that_stays_full_refuses_the_clip_and_recording_resumes(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    held = write_clip(store, owner, start_s=T0 - 2000)
    old = write_clip(store, owner, start_s=T0 - 1000)
    store.hold(held, "release-1", FOREVER)
    faults = StorageFaults()
    faults.set_disk_full(True)

    def free_space_later(frame: Frame, _result: object) -> None:
        if frame.index == 60:
            faults.set_disk_full(False)

    source = camera(10, presses=[1.0, 6.0])
    events: list[DeviceEvent] = []
    pipeline = CameraPipeline(
        "front",
        source,
        FaultyStore(store, faults),
        lambda: [owner.recipient()],
        on_event=events.append,
        on_frame=free_space_later,
        button=source.button,
        config=RecorderConfig(post_roll_s=1, pre_roll_s=1),
    )
    stats = await pipeline.run()
    errors = [e for e in events if isinstance(e, RecordingError)]
    # The clip is refused after evicting the one old clip; the retry at the next keyframe of the
    # same event finds nothing left to evict and says so; the disk frees up before the next event.
    assert errors == [
        RecordingError(
            "front", "camera front: cannot write segment: [Errno 28] No space left on device"
        ),
        RecordingError("front", "camera front: disk full and no unheld clip left to evict"),
    ]
    assert stats.errors == 2
    ids = [c.clip_id for c in store.list_clips()]
    assert ids[0] == held  # never deleted, whatever the disk does
    assert old not in ids  # evicted for the retry
    assert len(ids) == 2  # the refused clip left nothing; the one after the outage is whole
    assert store.clip(ids[1]).start_s >= T0 + 4.0
    assert len(decrypt_segments(store, held, owner)) == 2

    # Nothing left to evict: the refusal says so.
    store.hold(ids[1], "release-2", FOREVER)
    faults.set_disk_full(True)
    events.clear()
    source = camera(3, presses=[0.5])
    again = CameraPipeline(
        "front",
        source,
        FaultyStore(store, faults),
        lambda: [owner.recipient()],
        on_event=events.append,
        button=source.button,
    )
    await again.run()
    assert [e for e in events if isinstance(e, RecordingError)] == [
        RecordingError("front", "camera front: disk full and no unheld clip left to evict")
    ]
    assert [c.clip_id for c in store.list_clips()] == ids


@pytest.mark.asyncio
async def test_a_stalled_disk_on_one_camera_does_not_stall_another(
    store: ClipStore, owner: age.X25519Identity
) -> None:
    stalled = StorageFaults()
    stalled.block()
    slow = CameraPipeline(
        "a",
        (cam_a := camera(10, presses=[0.5], name="a.toml")),
        FaultyStore(store, stalled),  # camera a's writes stall; b shares the store unwrapped
        lambda: [owner.recipient()],
        button=cam_a.button,
    )
    fast = CameraPipeline(
        "b",
        (cam_b := camera(10, presses=[0.5], name="b.toml")),
        store,
        lambda: [owner.recipient()],
        button=cam_b.button,
    )
    slow_task = asyncio.create_task(slow.run())
    fast_task = asyncio.create_task(fast.run())
    try:
        await asyncio.to_thread(stalled.waiting.wait)  # camera a is stuck inside a write
        fast_stats = await fast_task
        assert fast_stats.frames == 150
        assert fast_stats.segments == 3  # 0-5.6 s: pre-roll from 0, press at 0.5 s, post-roll 5 s
        assert not slow_task.done()
        assert slow.stats.frames < 150
        assert slow.stats.segments == 0
    finally:
        stalled.unblock()  # never leave a worker thread blocked behind a failed assertion
    slow_stats = await slow_task
    assert slow_stats.frames == 150
    assert {c.camera for c in store.list_clips()} == {"a", "b"}
