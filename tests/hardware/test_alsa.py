"""The ALSA speaker through PyAV: real alsa-lib output (its ``file`` plugin writing what the PCM
plays to a file, so no sound card is needed), and the clear failures when it cannot open."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardware import AlsaSink, AudioChunk, SpeakerError, alsa_available, peak_frequency

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not alsa_available(), reason="this PyAV has no ALSA output device"),
]

RATE = 48_000


@pytest.fixture
def alsa_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ALSA configuration with one PCM, ``tofile``: it plays into ``played.raw`` (raw
    16-bit mono) through alsa-lib's file plugin over its null device. Returns that file."""
    played = tmp_path / "played.raw"
    conf = tmp_path / "asound.conf"
    conf.write_text(
        "pcm.!null { type null }\n"
        "pcm.tofile {\n"
        "  type file\n"
        '  slave.pcm "null"\n'
        f'  file "{played}"\n'
        '  format "raw"\n'
        "}\n"
    )
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(conf))
    return played


def tone(hz: float, seconds: float) -> list[AudioChunk]:
    t = np.arange(round(seconds * RATE)) / RATE
    samples = (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    return [AudioChunk(i / RATE, samples[i : i + 960], RATE) for i in range(0, samples.size, 960)]


@pytest.mark.asyncio
async def test_alsa_output_plays_every_sample_in_order(alsa_conf: Path) -> None:
    sink = AlsaSink("tofile")
    assert repr(sink) == "AlsaSink('tofile', 48000 Hz)"
    for chunk in tone(523.0, 0.5):
        await sink.play(chunk)
    await sink.close()
    played = np.fromfile(alsa_conf, dtype="<i2")
    assert played.size == RATE // 2
    assert peak_frequency(played, RATE) == pytest.approx(523.0, abs=2.0)
    with pytest.raises(SpeakerError, match=r"^the speaker is closed$"):
        await sink.play(tone(523.0, 0.02)[0])


@pytest.mark.asyncio
async def test_alsa_refuses_another_rate(alsa_conf: Path) -> None:
    sink = AlsaSink("tofile")
    try:
        with pytest.raises(SpeakerError, match=r"^this speaker plays 48000 Hz, got a chunk at"):
            await sink.play(AudioChunk(0.0, np.zeros(320, dtype=np.int16), 16_000))
    finally:
        await sink.close()


def test_an_unknown_device_fails_at_open_naming_it(alsa_conf: Path) -> None:
    with pytest.raises(SpeakerError) as failed:
        AlsaSink("porch-speaker")
    assert str(failed.value) == (
        "cannot open ALSA output 'porch-speaker': Input/output error; list the devices with "
        "`aplay -L` and name one (alsa:default, alsa:hw:0,0), or set the speaker to none"
    )


def test_a_pyav_without_alsa_says_what_is_missing() -> None:
    # The formats a PyAV built without libavdevice's ALSA output would have.
    assert not alsa_available(frozenset({"wav", "mp4"}))
    with pytest.raises(SpeakerError) as missing:
        AlsaSink("default", formats=frozenset({"wav", "mp4"}))
    assert str(missing.value) == (
        "cannot open ALSA output 'default': this PyAV's ffmpeg has no ALSA output device "
        "(libavdevice without alsa); install a PyAV built with ALSA, or set the camera's "
        "speaker to wav:PATH or none"
    )
