"""Sound from files and network cameras: the container's audio track, decoded (only while someone
listens) into the same 20 ms chunks of 48 kHz mono as the simulated microphone, stamped on the
frames' clock."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import numpy as np
import pytest

from hardware import AudioChunk, FileCamera, LiveCamera, StreamMicrophone, microphone_of
from tests.hardware._media import rendered, write_video, write_video_with_tone

FPS = 15
SECONDS = 2
TONE_HZ = 440.0  # what write_video_with_tone plays


def _dominant_hz(chunks: list[AudioChunk]) -> float:
    samples = np.concatenate([c.samples for c in chunks]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / 48_000)[int(np.argmax(spectrum))])


@pytest.fixture(scope="module")
def with_sound(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sound") / "door.mp4"
    write_video_with_tone(path)
    return path


async def _frames(camera: FileCamera | LiveCamera, count: int | None = None) -> int:
    seen = 0
    async for _ in camera.frames():
        seen += 1
        if seen == count:
            break
    return seen


async def _heard(camera: FileCamera, *, max_queued: int = 1000) -> tuple[list[AudioChunk], int]:
    """Read the whole file while listening: the chunks still queued, and those lost."""
    assert camera.microphone is not None
    listening = camera.microphone.listen(max_queued=max_queued)
    try:
        assert await _frames(camera) == FPS * SECONDS
        return listening.drain(), listening.skipped
    finally:
        listening.close()
        await camera.close()


@pytest.mark.asyncio
async def test_a_file_with_sound_has_a_microphone_that_hears_it(with_sound: Path) -> None:
    camera = FileCamera(with_sound)
    assert isinstance(microphone_of(camera), StreamMicrophone)
    chunks, skipped = await _heard(camera)
    assert skipped == 0
    # Two seconds of sound (the AAC encoder's priming and tail aside), in 20 ms chunks.
    assert 95 <= len(chunks) <= 101
    assert all(c.samples.shape == (960,) and c.sample_rate == 48_000 for c in chunks)
    starts = np.array([c.pts_s for c in chunks])
    assert starts[0] == pytest.approx(0.0, abs=0.05)
    assert np.allclose(np.diff(starts), 0.02)
    assert _dominant_hz(chunks[5:-5]) == pytest.approx(TONE_HZ, abs=3.0)


@pytest.mark.asyncio
async def test_nothing_is_decoded_while_nobody_listens(with_sound: Path) -> None:
    camera = FileCamera(with_sound)
    microphone = camera.microphone
    assert microphone is not None
    try:
        assert await _frames(camera) == FPS * SECONDS
    finally:
        await camera.close()
    assert microphone.captured == 0


@pytest.mark.asyncio
async def test_a_file_without_sound_has_no_microphone(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    write_video(path, rendered(5, 160, 120, FPS), fps=FPS)
    camera = FileCamera(path)
    try:
        assert camera.microphone is None
        assert microphone_of(camera) is None
    finally:
        await camera.close()


@pytest.mark.asyncio
async def test_a_mono_track_at_another_rate_is_resampled(tmp_path: Path) -> None:
    path = tmp_path / "mono.mp4"
    write_video_with_tone(path, rate=16_000, layout="mono")
    chunks, _ = await _heard(FileCamera(path))
    assert 95 <= len(chunks) <= 101
    assert _dominant_hz(chunks[5:-5]) == pytest.approx(TONE_HZ, abs=3.0)


@pytest.mark.asyncio
async def test_a_listener_that_falls_behind_loses_its_oldest_chunks(with_sound: Path) -> None:
    camera = FileCamera(with_sound)
    assert camera.microphone is not None
    chunks, skipped = await _heard(camera, max_queued=10)
    assert len(chunks) == 10
    assert skipped == camera.microphone.captured - 10
    assert chunks[-1].pts_s == pytest.approx(0.02 * (camera.microphone.captured - 1), abs=0.05)


@pytest.mark.asyncio
async def test_the_audio_iterator_stops_listening_when_closed(with_sound: Path) -> None:
    camera = FileCamera(with_sound)
    microphone = camera.microphone
    assert microphone is not None
    sound = microphone.audio()
    first = asyncio.ensure_future(anext(sound))
    try:
        async for _ in camera.frames():
            if first.done():
                break
        chunk = await asyncio.wait_for(first, 30)
        assert chunk.samples.shape == (960,)
        assert microphone.listening
        await sound.aclose()
        assert not microphone.listening
    finally:
        await camera.close()


@pytest.mark.asyncio
async def test_a_network_camera_with_sound_has_a_microphone_once_connected(
    with_sound: Path,
) -> None:
    camera = LiveCamera(f"file:{with_sound}", max_attempts=1)
    assert camera.microphone is None  # not known before it answers
    try:
        await camera.connect()
        microphone = microphone_of(camera)
        assert isinstance(microphone, StreamMicrophone)
        listening = microphone.listen(max_queued=1000)
        await _frames(camera, FPS * SECONDS)
        chunks = listening.drain()
        listening.close()
    finally:
        await camera.close()
    assert len(chunks) >= 90
    assert all(b.pts_s >= a.pts_s for a, b in itertools.pairwise(chunks))
    assert _dominant_hz(chunks[5:-5]) == pytest.approx(TONE_HZ, abs=3.0)
