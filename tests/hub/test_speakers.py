"""Each camera's speaker: the ``[speakers]`` config, the registry on the app, playing under the
floor with resampling, and a running ``doorward serve`` whose simulated speaker tests can read."""

from __future__ import annotations

import asyncio
import io
import logging
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from hardware import (
    AudioChunk,
    FloorTaken,
    SimulatedSpeaker,
    WavSink,
    alsa_available,
    open_speaker,
)
from hub.server.config import (
    ConfigError,
    ServeConfig,
    SpeakerConfig,
    load_config,
    parse_camera,
    parse_speaker,
    speaker_for,
)
from hub.server.runtime import Running
from hub.server.serve import serve
from hub.server.speakers import NoSpeaker, SpeakerBusy, Speakers, open_speakers
from hub.wire.errors import NotFound

pytestmark = pytest.mark.timeout(60)

SCENARIO = """[camera]
width = 160
height = 120
fps = 5
seconds = 600
seed = 3
realtime = true
"""


def tone(hz: float, seconds: float, rate: int, *, chunk_s: float = 0.02) -> list[AudioChunk]:
    """A sine tone cut into chunks of ``chunk_s``."""
    t = np.arange(round(seconds * rate)) / rate
    samples = (9000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    step = round(chunk_s * rate)
    return [AudioChunk(i / rate, samples[i : i + step], rate) for i in range(0, samples.size, step)]


# -- config ---------------------------------------------------------------------------------


def test_speaker_specs_parse_and_bad_ones_say_what_to_write() -> None:
    assert parse_speaker("sim") == SpeakerConfig("sim")
    assert parse_speaker("none") == SpeakerConfig("none")
    assert parse_speaker("wav:out/talk.wav") == SpeakerConfig("wav", "out/talk.wav")
    assert parse_speaker("alsa:hw:0,0") == SpeakerConfig("alsa", "hw:0,0")
    assert str(parse_speaker("alsa:hw:0,0")) == "alsa:hw:0,0"
    with pytest.raises(ConfigError) as bad:
        parse_speaker("loud")
    assert str(bad.value) == (
        "speaker spec 'loud' is not sim, wav:PATH, alsa:DEVICE or none; write, for instance, "
        'front = "alsa:default" under [speakers]'
    )
    with pytest.raises(ConfigError) as empty:
        parse_speaker("alsa:")
    assert str(empty.value) == (
        "speaker spec 'alsa:' names no alsa target; write alsa:default or alsa:hw:0,0"
    )
    with pytest.raises(ConfigError, match=r"^speaker spec 'wav:  ' names no wav target; "):
        parse_speaker("wav:  ")
    with pytest.raises(ConfigError, match=r"^speaker spec 'sim:x' is not sim"):
        parse_speaker("sim:x")


def test_the_config_names_a_speaker_per_camera_with_defaults_by_kind(tmp_path: Path) -> None:
    path = tmp_path / "doorward.toml"
    path.write_text(
        'cameras = ["front=simulated", "v4l2:/dev/video0"]\n[speakers]\nfront = "none"\n'
    )
    config = load_config(path)
    front, back = (parse_camera(text, i) for i, text in enumerate(config.cameras))
    assert speaker_for(config, front) == SpeakerConfig("none")
    assert speaker_for(config, back) == SpeakerConfig("none")  # not simulated: no speaker
    assert speaker_for(ServeConfig(), parse_camera("simulated", 0)) == SpeakerConfig("sim")
    path.write_text('[speakers]\nfront = "horn"\n')
    with pytest.raises(ConfigError, match=r"^speakers\.front: speaker spec 'horn' is not sim"):
        load_config(path)
    path.write_text("[speakers]\nfront = 3\n")
    with pytest.raises(ConfigError) as typed:
        load_config(path)
    assert str(typed.value) == (
        "speakers.front must be a string (sim, wav:PATH, alsa:DEVICE or none), got 3"
    )
    path.write_text('speakers = "sim"\n')
    with pytest.raises(ConfigError, match=r"^speakers must be a table"):
        load_config(path)


@pytest.mark.asyncio
async def test_serve_refuses_a_speaker_for_a_camera_it_does_not_have(tmp_path: Path) -> None:
    config = load_config(None, {"data_dir": tmp_path, "speakers": {"garage": "sim"}})
    with pytest.raises(ConfigError) as unknown:
        await serve(config, out=io.StringIO())
    assert str(unknown.value) == (
        "speakers name camera(s) garage that are not configured (cameras: cam1)"
    )


# -- the registry -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_play_resamples_to_the_speaker_and_holds_the_floor_throughout() -> None:
    speaker = SimulatedSpeaker(buffer_s=0.05)
    speakers = Speakers({"front": speaker, "back": None})
    floor = speakers.floor("front")
    seen: list[str | None] = []

    async def chunks() -> AsyncIterator[AudioChunk]:
        for chunk in tone(700.0, 0.5, 16_000):
            seen.append(floor.holder)
            yield chunk

    seconds = await speakers.play("front", chunks(), holder="owner 3f2a")
    # Every chunk was played while the floor was held, and it is free again after.
    assert set(seen) == {"owner 3f2a"}
    assert floor.holder is None
    assert not floor.ducked
    # 16 kHz in, the speaker's 48 kHz out: same length in seconds, same pitch.
    assert seconds == pytest.approx(0.5, abs=0.01)
    assert all(p.samples.dtype == np.int16 for p in speaker.played)
    assert speaker.samples().size == pytest.approx(24_000, abs=480)
    assert speaker.peak_hz() == pytest.approx(700.0, abs=3.0)


@pytest.mark.asyncio
async def test_a_second_player_is_told_who_holds_the_floor_and_plays_nothing() -> None:
    speaker = SimulatedSpeaker()
    speakers = Speakers({"front": speaker})
    started, release = asyncio.Event(), asyncio.Event()

    async def held() -> AsyncIterator[AudioChunk]:
        yield tone(440.0, 0.02, 48_000)[0]
        started.set()
        await release.wait()

    first = asyncio.ensure_future(speakers.play("front", held(), holder="owner 3f2a"))
    await started.wait()
    before = len(speaker.played)
    with pytest.raises(FloorTaken) as taken:
        await speakers.play("front", tone(880.0, 0.1, 48_000), holder="quick reply 'away'")
    assert isinstance(taken.value, SpeakerBusy)  # a 409 through the API
    assert (taken.value.status, taken.value.code) == (409, "speaker_busy")
    assert taken.value.holder == "owner 3f2a"
    assert str(taken.value) == "the speaker is in use by owner 3f2a; try again when they finish"
    assert len(speaker.played) == before
    assert speakers.floor("front").ducked
    release.set()
    await first
    # Once the first is done, the second may play (a sync iterable works as well).
    await speakers.play("front", tone(880.0, 0.1, 48_000), holder="quick reply 'away'")
    assert speakers.floor("front").holder is None


@pytest.mark.asyncio
async def test_cameras_without_a_speaker_and_unknown_cameras_are_refused() -> None:
    speakers = Speakers({"front": SimulatedSpeaker(), "back": None})
    with pytest.raises(NoSpeaker) as none:
        await speakers.play("back", tone(440.0, 0.1, 48_000), holder="owner 3f2a")
    assert (none.value.code, str(none.value)) == (
        "no_speaker",
        "camera 'back' has no speaker; name one under [speakers] in the config "
        "(sim, wav:PATH or alsa:DEVICE)",
    )
    assert not speakers.floor("back").ducked  # refused before the floor was taken
    with pytest.raises(NotFound, match=r"^no camera named 'garage'"):
        await speakers.play("garage", [], holder="owner 3f2a")
    assert speakers.sink("garage") is None
    with pytest.raises(LookupError, match=r"^camera 'back' has no simulated speaker"):
        speakers.simulated("back")
    assert speakers.cameras == ("front", "back")


@pytest.mark.asyncio
async def test_open_speakers_uses_the_camera_s_own_and_writes_wav_files(tmp_path: Path) -> None:
    from hardware.sim import SimulatedCamera, parse_scenario

    camera = SimulatedCamera(parse_scenario(SCENARIO, "s.toml"), name="front")
    wav = tmp_path / "porch.wav"
    config = load_config(
        None,
        {
            "cameras": [
                "front=simulated",
                f"porch=simulated:{tmp_path / 's.toml'}",
                "side=simulated",
            ],
            "speakers": {"porch": f"wav:{wav}", "side": "none"},
        },
    )
    cameras = [parse_camera(text, i) for i, text in enumerate(config.cameras)]
    speakers = open_speakers(config, cameras, {"front": camera})
    assert speakers.simulated("front") is camera.speaker
    assert isinstance(speakers.sink("porch"), WavSink)
    assert speakers.sink("side") is None
    await speakers.play("porch", tone(500.0, 0.2, 24_000), holder="chime")
    await speakers.close()
    with wave.open(str(wav)) as written:
        assert (written.getframerate(), written.getnchannels()) == (48_000, 1)
        assert written.getnframes() == pytest.approx(9_600, abs=480)
    assert camera.speaker.closed


def test_a_speaker_that_cannot_open_is_left_out_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no-such-folder" / "talk.wav"
    config = load_config(None, {"speakers": {"cam1": f"wav:{missing}"}})
    with caplog.at_level(logging.INFO, logger="hub.server.speakers"):
        speakers = open_speakers(config, [parse_camera("simulated", 0)], {})
    assert speakers.sink("cam1") is None
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "speaker.off camera=cam1 speaker=wav:" + str(missing) + " error=cannot open 'talk.wav' "
        "to write sound: No such file or directory; check the folder exists and is writable"
    ]


@pytest.mark.skipif(not alsa_available(), reason="this PyAV has no ALSA output device")
def test_an_alsa_speaker_that_cannot_open_falls_back_to_none_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = load_config(None, {"speakers": {"cam1": "alsa:porch-speaker"}})
    with caplog.at_level(logging.DEBUG):
        speakers = open_speakers(config, [parse_camera("simulated", 0)], {})
    assert speakers.sink("cam1") is None
    assert [r.getMessage() for r in caplog.records] == [
        "speaker.off camera=cam1 speaker=alsa:porch-speaker error=cannot open ALSA output "
        "'porch-speaker': Input/output error; list the devices with `aplay -L` and name one "
        "(alsa:default, alsa:hw:0,0), or set the speaker to none"
    ]


def test_open_speaker_by_kind() -> None:
    assert open_speaker("none") is None
    assert isinstance(open_speaker("sim"), SimulatedSpeaker)
    with pytest.raises(ValueError, match=r"^speaker kind must be sim, wav, alsa or none"):
        open_speaker("horn")


# -- a running device ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_running_device_exposes_its_simulated_speaker(tmp_path: Path) -> None:
    scenario = tmp_path / "cam.toml"
    scenario.write_text(SCENARIO)
    config = ServeConfig(
        data_dir=tmp_path / "data",
        cameras=(f"front=simulated:{scenario}", f"back=simulated:{scenario}"),
        speakers=(("back", SpeakerConfig("none")),),
        host="127.0.0.1",
        port=0,
        advertise=False,
    )
    stop = asyncio.Event()
    running: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    server = asyncio.ensure_future(
        serve(config, stop=stop, out=io.StringIO(), on_running=running.set_result)
    )
    try:
        device = await asyncio.wait_for(running, 30)
        speaker = device.speakers.simulated("front")
        assert device.speakers.sink("back") is None
        await device.speakers.play("front", tone(600.0, 0.2, 48_000), holder="owner 3f2a")
        assert speaker.peak_hz() == pytest.approx(600.0, abs=5.0)
    finally:
        stop.set()
        assert await asyncio.wait_for(server, 30) == 0
    assert speaker.closed


@pytest.mark.asyncio
async def test_a_claim_holds_the_floor_until_released_and_its_holder_plays_under_it() -> None:
    speaker = SimulatedSpeaker()
    speakers = Speakers({"front": speaker, "back": None})
    claim = speakers.claim("front", "owner 3f2a")
    assert repr(claim) == "SpeakerClaim('front', 'owner 3f2a', held)"
    floor = speakers.floor("front")
    assert floor.ducked
    with pytest.raises(SpeakerBusy, match=r"^the speaker is in use by owner 3f2a; "):
        speakers.claim("front", "chime")
    with pytest.raises(SpeakerBusy):
        await speakers.play("front", tone(880.0, 0.1, 48_000), holder="chime")
    # The claim's holder plays under it, and the floor stays held after the playback.
    await speakers.play("front", tone(440.0, 0.1, 48_000), holder="owner 3f2a")
    assert floor.holder == "owner 3f2a"
    assert speaker.peak_hz() == pytest.approx(440.0, abs=10.0)
    claim.release()
    claim.release()  # once is enough; twice does nothing
    assert not claim.held
    assert floor.holder is None
    with pytest.raises(NoSpeaker):
        speakers.claim("back", "owner 3f2a")
    with pytest.raises(NoSpeaker):
        speakers.claim("garage", "owner 3f2a")
