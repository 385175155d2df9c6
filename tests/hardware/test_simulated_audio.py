"""The simulated camera's microphone: a tone (plus a chime while pressed) in 20 ms chunks of 48 kHz
mono PCM, paced on the camera's clock and stamped like its frames."""

from __future__ import annotations

import numpy as np
import pytest

from hardware import AudioChunk, AudioSource, ScenarioError, microphone_of
from hardware.sim import SimulatedCamera, parse_scenario
from tests.hardware.kit import FakeClock, camera_toml


def _camera(text: str, **kwargs: object) -> SimulatedCamera:
    return SimulatedCamera(parse_scenario(text, "sim.toml"), **kwargs)  # type: ignore[arg-type]


def _dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(len(samples), 1 / 48_000)[int(np.argmax(spectrum))])


def test_a_camera_without_audio_has_no_microphone() -> None:
    cam = _camera(camera_toml())
    assert cam.microphone is None
    assert microphone_of(cam) is None


@pytest.mark.asyncio
async def test_the_tone_comes_in_20_ms_chunks_of_48_khz_mono_in_virtual_time() -> None:
    cam = _camera(camera_toml(seconds=0.5, audio=True, tone_hz=1000))
    microphone = microphone_of(cam)
    assert isinstance(microphone, AudioSource)
    chunks = [chunk async for chunk in microphone.audio()]
    assert len(chunks) == 25  # 0.5 s of 20 ms chunks, then the run ends
    assert [c.pts_s for c in chunks[:3]] == [0.0, 0.02, 0.04]
    assert {(c.samples.dtype, c.samples.shape, c.sample_rate) for c in chunks} == {
        (np.dtype(np.int16), (960,), 48_000)
    }
    joined = np.concatenate([c.samples for c in chunks])
    assert _dominant_hz(joined) == 1000.0
    # The phase runs on across chunks: the joined signal is one clean tone, not clicks.
    largest_step = 32767 * 0.3 * 2 * np.pi * 1000 / 48_000  # the steepest slope of the sine
    assert np.max(np.abs(np.diff(joined.astype(np.int32)))) <= largest_step + 1
    assert cam.microphone is not None
    assert cam.microphone.captured == 25


@pytest.mark.asyncio
async def test_in_real_time_chunks_wait_for_their_20_ms_and_join_at_the_current_one() -> None:
    clock = FakeClock()
    cam = _camera(camera_toml(seconds=10.0, audio=True, realtime=True), clock=clock)
    frames = cam.frames()
    first = await anext(frames)  # the first frame starts the camera's clock
    assert first.pts_s == 0.0
    clock.t = 1.005  # someone starts listening a second later
    assert cam.microphone is not None
    listening = cam.microphone.audio()
    chunk = await anext(listening)
    assert chunk.pts_s == pytest.approx(1.0)
    assert clock.t == pytest.approx(1.02)  # delivered once its 20 ms were captured
    chunk = await anext(listening)
    assert chunk.pts_s == pytest.approx(1.02)
    assert clock.t == pytest.approx(1.04)
    await listening.aclose()  # type: ignore[attr-defined]
    await frames.aclose()  # type: ignore[attr-defined]
    await cam.close()


@pytest.mark.asyncio
async def test_a_press_adds_a_chime_to_the_tone() -> None:
    text = camera_toml(seconds=3.0, audio=True) + "[[press]]\nat_s = 1\n"
    cam = _camera(text)
    assert cam.microphone is not None
    chunks = [chunk async for chunk in cam.microphone.audio()]
    quiet = np.concatenate([c.samples for c in chunks[:50]])  # before the press
    chiming = np.concatenate([c.samples for c in chunks[50:100]])  # the second after it
    after = np.concatenate([c.samples for c in chunks[100:]])

    def level_at(samples: np.ndarray, hz: float) -> float:
        spectrum = np.abs(np.fft.rfft(samples.astype(np.float64))) / len(samples)
        return float(spectrum[round(hz * len(samples) / 48_000)])

    assert _dominant_hz(quiet) == 440.0
    assert level_at(quiet, 880) < 1
    assert level_at(chiming, 880) > 1000
    assert level_at(after, 880) < 1


def test_audio_chunks_and_scenario_options_are_checked() -> None:
    with pytest.raises(ValueError, match=r"^samples must be one channel of int16, got float64 "):
        AudioChunk(0.0, np.zeros(960))  # type: ignore[arg-type]
    with pytest.raises(ScenarioError) as bad:
        parse_scenario(camera_toml(audio=True, tone_hz=5), "sim.toml")
    assert str(bad.value) == (
        "sim.toml line 7: [camera] tone_hz must be a number from 20 to 20000, got 5"
    )
