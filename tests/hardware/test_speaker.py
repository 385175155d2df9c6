"""The speaker contract: real-time pacing, what a simulated speaker remembers, the floor, WAV."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import numpy as np
import pytest

from hardware import (
    AudioChunk,
    FloorTaken,
    SimulatedSpeaker,
    SpeakerError,
    SpeakerFloor,
    WavSink,
    peak_frequency,
    speaker_of,
)

RATE = 48_000


def tone(hz: float, seconds: float, rate: int = RATE, start: float = 0.0) -> AudioChunk:
    t = np.arange(int(seconds * rate)) / rate
    samples = (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    return AudioChunk(start, samples, rate)


@pytest.mark.asyncio
async def test_simulated_speaker_plays_in_real_time_and_remembers_when() -> None:
    speaker = SimulatedSpeaker(buffer_s=0.05)
    began = time.monotonic()
    for _ in range(10):
        await speaker.play(tone(440, 0.02))
    starts = [p.at - began for p in speaker.played]
    # Each chunk starts where the one before ran out: 20 ms apart, not all at once, and the
    # caller was held back to the speaker's pace (all but the last 50 ms buffered).
    assert np.allclose(np.diff(starts), 0.02, atol=1e-6)
    assert time.monotonic() - began >= 0.2 - 0.05 - 1e-3
    assert speaker.peak_hz(began) == pytest.approx(440, abs=10)


@pytest.mark.asyncio
async def test_first_sound_finds_the_onset_inside_a_chunk() -> None:
    speaker = SimulatedSpeaker(buffer_s=1.0)
    silence = np.zeros(RATE // 100, dtype=np.int16)  # 10 ms
    loud = np.concatenate([silence, tone(300, 0.01).samples])
    await speaker.play(AudioChunk(0.0, loud, RATE))
    onset = speaker.first_sound()
    assert onset is not None
    assert onset - speaker.played[0].at == pytest.approx(0.01, abs=0.002)
    assert speaker.first_sound(since=speaker.played[0].at + 1) is None


@pytest.mark.asyncio
async def test_a_speaker_refuses_another_rate_and_plays_nothing_after_close() -> None:
    speaker = SimulatedSpeaker()
    with pytest.raises(SpeakerError, match="plays 48000 Hz, got a chunk at 16000 Hz; resample"):
        await speaker.play(tone(440, 0.02, rate=16_000))
    await speaker.close()
    with pytest.raises(SpeakerError, match="closed"):
        await speaker.play(tone(440, 0.02))
    assert speaker.played == []


def test_the_floor_has_one_holder_and_ducks_while_held() -> None:
    floor = SpeakerFloor()
    assert not floor.ducked
    with floor.hold("owner abcd"):
        assert floor.ducked
        with pytest.raises(FloorTaken) as info, floor.hold("quick reply 'away'"):
            pass
        assert info.value.holder == "owner abcd"
        assert "in use by owner abcd" in str(info.value)
    assert floor.holder is None
    assert not floor.ducked
    with floor.hold("quick reply 'away'"):
        assert floor.holder == "quick reply 'away'"


@pytest.mark.asyncio
async def test_wav_sink_writes_a_file_wave_reads_back(tmp_path: Path) -> None:
    sink = WavSink(tmp_path / "out.wav", realtime=False)
    played = tone(1000, 0.2)
    await sink.play(played)
    await sink.close()
    with wave.open(str(tmp_path / "out.wav"), "rb") as back:
        assert (back.getnchannels(), back.getsampwidth(), back.getframerate()) == (1, 2, RATE)
        samples = np.frombuffer(back.readframes(back.getnframes()), dtype="<i2")
    assert np.array_equal(samples, played.samples)
    assert peak_frequency(samples, RATE) == pytest.approx(1000, abs=5)


def test_wav_sink_in_a_missing_folder_says_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(SpeakerError, match="check the folder exists"):
        WavSink(tmp_path / "no" / "out.wav")


def test_speaker_of_finds_only_a_real_sink() -> None:
    class Camera:
        speaker = SimulatedSpeaker()

    class Mute:
        speaker = "not a speaker"

    assert speaker_of(Camera()) is Camera.speaker
    assert speaker_of(Mute()) is None
    assert peak_frequency(np.zeros(100, dtype=np.int16), RATE) is None
