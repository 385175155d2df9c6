"""Sound files the doorbell plays: WAV and Ogg Opus decoded to mono 48 kHz (any common rate and
channel count resampled), everything else refused with a message that says what to do; the
built-in chime's two tones; the ``chime`` option checked when the config is loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware import AUDIO_RATE, peak_frequency
from hub.server.chime import DING_HZ, DONG_HZ, MAX_CHIME_S, default_chime
from hub.server.config import EXAMPLE_CONFIG, ConfigError, ServeConfig, load_config
from hub.server.sound import SoundError, SoundTooLong, decode_sound
from tests.hub.soundkit import encoded_tone, opus_tone, wav_tone

_SEEDS = [
    wav_tone(440.0, 0.2, rate=16_000),
    wav_tone(440.0, 0.1, rate=22_050, channels=3),
    opus_tone(440.0, 0.2),
    opus_tone(440.0, 0.1, channels=2),
]

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("data", "source"),
    [
        (wav_tone(440.0, 1.0), ("wav", "pcm_s16le", 48_000, 1)),
        (wav_tone(440.0, 1.0, rate=44_100, channels=2), ("wav", "pcm_s16le", 44_100, 2)),
        (wav_tone(440.0, 1.0, rate=8_000, channels=6), ("wav", "pcm_s16le", 8_000, 6)),
        (opus_tone(440.0, 1.0), ("ogg", "opus", 48_000, 1)),
        (opus_tone(440.0, 1.0, channels=2), ("ogg", "opus", 48_000, 2)),
    ],
    ids=["wav-48k-mono", "wav-44k1-stereo", "wav-8k-6ch", "opus-mono", "opus-stereo"],
)
def test_wav_and_opus_become_mono_48k_with_the_tone_kept(
    data: bytes, source: tuple[str, str, int, int]
) -> None:
    sound = decode_sound(data, max_s=15.0)
    assert sound.sample_rate == AUDIO_RATE
    assert sound.samples.ndim == 1
    assert (
        sound.source_format,
        sound.source_codec,
        sound.source_rate,
        sound.source_channels,
    ) == source
    assert sound.duration_s == pytest.approx(1.0, abs=0.03)
    assert peak_frequency(sound.samples, AUDIO_RATE) == pytest.approx(440.0, abs=2.0)


def test_chunks_are_20_ms_and_cover_the_sound_end_to_end() -> None:
    sound = decode_sound(wav_tone(440.0, 0.55), max_s=15.0)
    chunks = list(sound.chunks())
    assert [len(c.samples) for c in chunks] == [960] * 27 + [480]
    assert np.array_equal(np.concatenate([c.samples for c in chunks]), sound.samples)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"hello, I am a text file",
            "the reply is not a WAV (PCM) or Ogg Opus file (its first bytes are neither "
            "RIFF/WAVE nor OggS)",
        ),
        (
            b"\x89PNG\r\n\x1a\n" + bytes(64),
            "the reply is not a WAV (PCM) or Ogg Opus file (its first bytes are neither "
            "RIFF/WAVE nor OggS)",
        ),
        (
            encoded_tone(440.0, 0.5, container="mpegts", codec="mp2"),
            "the reply is not a WAV (PCM) or Ogg Opus file (its first bytes are neither "
            "RIFF/WAVE nor OggS)",
        ),
        (
            b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk",
            "the reply is not a readable WAV file: Invalid data found when processing input",
        ),
        (b"OggS" + bytes(200), "the reply is not a readable Ogg file: End of file"),
        (
            encoded_tone(440.0, 0.5, container="ogg", codec="flac"),
            "the reply is an Ogg file of flac sound; the doorbell plays Opus in Ogg: convert "
            "it (ffmpeg -i IN -ac 1 -c:a libopus OUT.ogg)",
        ),
        (
            encoded_tone(440.0, 0.5, container="wav", codec="adpcm_ms"),
            "the reply is a WAV file of adpcm_ms sound; the doorbell plays PCM WAV: convert "
            "it (ffmpeg -i IN -ac 1 -c:a libopus OUT.ogg)",
        ),
        (
            wav_tone(440.0, 0.5, rate=4_000),
            "the reply has a sample rate of 4000 Hz; the doorbell resamples anything from "
            "8000 to 192000 Hz (48000 is best)",
        ),
        (
            wav_tone(440.0, 0.1, rate=8_000, channels=9),
            "the reply has 9 channels; the doorbell mixes 1 to 8 channels down to one (mono "
            "is best)",
        ),
        (wav_tone(440.0, 0.0), "the reply holds no sound (an audio stream without samples)"),
    ],
    ids=[
        "text",
        "png",
        "mpeg-ts",
        "broken-wav",
        "broken-ogg",
        "ogg-flac",
        "wav-adpcm",
        "rate-4k",
        "nine-channels",
        "empty",
    ],
)
def test_what_is_not_playable_is_refused_with_what_to_do(data: bytes, message: str) -> None:
    with pytest.raises(SoundError) as refused:
        decode_sound(data, max_s=15.0, what="the reply")
    assert str(refused.value) == message
    assert (refused.value.status, refused.value.code) == (415, "unsupported_audio")


@pytest.mark.parametrize("data", [wav_tone(440.0, 2.0), opus_tone(440.0, 2.0)], ids=["wav", "opus"])
def test_too_long_is_refused_once_decoding_passes_the_limit(data: bytes) -> None:
    with pytest.raises(SoundTooLong) as refused:
        decode_sound(data, max_s=1.5, what="the reply")
    assert str(refused.value) == "the reply plays for more than 1.5 s; the limit is 1.5 s"
    assert (refused.value.status, refused.value.code) == (400, "audio_too_long")


def test_a_codec_ffmpeg_does_not_know_is_refused_by_name() -> None:
    data = bytearray(wav_tone(440.0, 0.2))
    data[20:22] = (0x7777).to_bytes(2, "little")  # the WAV format tag
    with pytest.raises(SoundError) as refused:
        decode_sound(bytes(data), max_s=15.0, what="the reply")
    assert str(refused.value) == (
        "the reply is a WAV file of sound in an unknown codec; convert it "
        "(ffmpeg -i IN -ac 1 -c:a libopus OUT.ogg)"
    )


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(_SEEDS),
    st.lists(
        st.tuples(
            st.sampled_from(["set", "cut", "insert"]), st.integers(0, 10**6), st.binary(max_size=40)
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_mangled_files_decode_or_raise_sound_error(
    seed: bytes, edits: list[tuple[str, int, bytes]]
) -> None:
    """Whatever an upload holds, decoding returns a sound or a SoundError, never anything else
    (it found a WAV whose format tag FFmpeg does not know, which had no codec context)."""
    data = bytearray(seed)
    for op, position, chunk in edits:
        at = position % len(data)
        if op == "set":
            data[at : at + len(chunk)] = chunk[: len(data) - at]
        elif op == "cut":
            del data[at : at + 1 + len(chunk)]
        else:
            data[at:at] = chunk
        if not data:
            data = bytearray(b"\0")
    try:
        sound = decode_sound(bytes(data), max_s=15.0)
    except SoundError:
        return
    assert sound.samples.dtype == np.int16
    assert sound.duration_s <= 15.0


def test_the_default_chime_is_a_falling_two_tone_ding_dong() -> None:
    chime = default_chime()
    ding_end = round(0.45 * AUDIO_RATE)
    assert chime.duration_s == pytest.approx(1.35)
    assert peak_frequency(chime.samples[:ding_end], AUDIO_RATE) == pytest.approx(DING_HZ, abs=3)
    assert peak_frequency(chime.samples[ding_end:], AUDIO_RATE) == pytest.approx(DONG_HZ, abs=2)
    assert int(np.abs(chime.samples.astype(np.int32)).max()) < 32767  # no clipping
    assert abs(int(chime.samples[0])) < 200  # each strike starts without a click


def test_a_chime_file_is_checked_when_the_config_is_loaded(tmp_path: Path) -> None:
    good = tmp_path / "chime.ogg"
    good.write_bytes(opus_tone(880.0, 1.0))
    assert load_config(None, {"chime": str(good)}).chime == str(good)
    assert load_config(None, {"chime": "off"}).chime == "off"
    assert ServeConfig().chime == ""
    assert 'chime = ""' in EXAMPLE_CONFIG

    long = tmp_path / "long.wav"
    long.write_bytes(wav_tone(880.0, MAX_CHIME_S + 1, rate=8_000))
    not_audio = tmp_path / "chime.txt"
    not_audio.write_text("ding dong")
    cases = {
        str(long): "chime: the chime file 'long.wav' plays for more than 10 s; the limit is "
        '10 s; give another file, "" for the built-in chime or "off" for none',
        str(not_audio): "chime: the chime file 'chime.txt' is not a WAV (PCM) or Ogg Opus file "
        '(its first bytes are neither RIFF/WAVE nor OggS); give another file, "" for the '
        'built-in chime or "off" for none',
        str(tmp_path / "missing.wav"): f"chime {str(tmp_path / 'missing.wav')!r} cannot be read: "
        'No such file or directory; give a WAV or Ogg Opus file, "" for the built-in chime '
        'or "off" for none',
    }
    for value, message in cases.items():
        with pytest.raises(ConfigError) as refused:
            load_config(None, {"chime": value})
        assert str(refused.value) == message
    with pytest.raises(ConfigError, match=r"^chime must be a file name, \"\" or \"off\", got 3$"):
        load_config(None, {"chime": 3})
