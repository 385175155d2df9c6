"""The chime on a running doorbell (``hub.server.runtime`` with a real-time simulated camera, its
simulated speaker, the API over TLS): a press rings the chime on that camera's speaker and owners
still get ``doorbell.pressed``; a held floor skips the chime (logged), ``chime = "off"`` plays
nothing; a quick reply and bad uploads meanwhile never stop the recording."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from crypto.keys import KeyBundle
from hardware import AUDIO_RATE, SimulatedSpeaker, WavSink, peak_frequency
from hardware.sim import SimulatedCamera, parse_scenario
from hub.client import ApiError, DoorwardClient, EventMessage
from hub.server import appkeys, runtime
from hub.server.chime import DING_HZ, DONG_HZ, Chimes, default_chime
from hub.server.config import ServeConfig, parse_camera
from hub.server.speakers import Speakers
from hub.server.state import Device
from tests.hub.soundkit import opus_tone, wav_tone

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

SCENARIO = "[camera]\nwidth = 160\nheight = 120\nfps = 10\nseconds = 3600\nseed = 3\n"


@dataclass
class Doorbell:
    running: runtime.Running
    camera: SimulatedCamera
    owner: KeyBundle
    url: str

    @property
    def speaker(self) -> SimulatedSpeaker:
        return self.running.speakers.simulated("front")

    def client(self) -> DoorwardClient:
        device = self.running.device
        return DoorwardClient(
            self.url,
            fingerprint=device.fingerprint,
            device_id=device.identity.device_id,
            key=self.owner.signing_key,
        )

    async def press(self, api: DoorwardClient, *, times: int = 1) -> EventMessage:
        """Press the doorbell (``times`` in a row); returns the first ``doorbell.pressed`` the
        owner's stream then gets."""
        stream = api.events(("doorbell.pressed",))
        first = asyncio.ensure_future(anext(stream))
        bus = self.running.app[appkeys.BUS]
        await asyncio.wait_for(bus.wait_for_subscriber(bus.subscriber_count + 1), 10)
        for _ in range(times):
            self.camera.button.press()
        try:
            return await asyncio.wait_for(first, 20)
        finally:
            await stream.aclose()


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@contextlib.asynccontextmanager
async def doorbell(tmp_path: Path, *, chime: str = "") -> AsyncIterator[Doorbell]:
    """``doorward serve``'s running device with one real-time simulated camera, ``front``, its
    simulated speaker and an owner."""
    data = tmp_path / "data"
    owner = KeyBundle.generate("x25519")
    device = Device.open(data)
    device.owners.add(owner.public(), name="phone", now=int(time.time()))
    device.close()
    scenario = tmp_path / "front.toml"
    scenario.write_text(SCENARIO)
    config = ServeConfig(
        data_dir=data,
        cameras=(f"front=simulated:{scenario}",),
        host="127.0.0.1",
        port=0,
        advertise=False,
        chime=chime,
    )
    cameras = [parse_camera(text, i) for i, text in enumerate(config.cameras)]
    camera = SimulatedCamera(parse_scenario(scenario.read_text(), "front.toml"), realtime=True)
    device = Device.open(data, request_limits=config.request_limits())
    api, page = _listener(), _listener()
    try:
        async with runtime.running_device(
            config, cameras, device, {"front": camera}, api=api, page=page, stop=asyncio.Event()
        ) as running:
            assert running is not None
            url = f"https://127.0.0.1:{api.getsockname()[1]}"
            yield Doorbell(running, camera, owner, url)
    finally:
        device.close()
        api.close()
        page.close()


async def test_a_press_rings_the_built_in_ding_dong_and_still_tells_the_owners(
    tmp_path: Path,
) -> None:
    async with doorbell(tmp_path) as bell, bell.client() as api:
        event = await bell.press(api)
        assert bell.running.chimes is not None
        await bell.running.chimes.wait("front")
        played = bell.speaker.samples()
        frames_after = (await api.metrics())["frames"]
    assert event.data == {"camera": "front"}
    assert len(played) == round(1.35 * AUDIO_RATE)
    ding = round(0.45 * AUDIO_RATE)
    assert peak_frequency(played[:ding], AUDIO_RATE) == pytest.approx(DING_HZ, abs=3.0)
    assert peak_frequency(played[ding:], AUDIO_RATE) == pytest.approx(DONG_HZ, abs=3.0)
    assert (bell.running.chimes.rung, bell.running.chimes.skipped) == (1, 0)
    assert frames_after > 0


async def test_a_configured_chime_file_plays_its_own_tone(tmp_path: Path) -> None:
    chime = tmp_path / "chime.ogg"
    chime.write_bytes(opus_tone(880.0, 0.8))
    async with doorbell(tmp_path, chime=str(chime)) as bell, bell.client() as api:
        await bell.press(api)
        assert bell.running.chimes is not None
        await bell.running.chimes.wait("front")
    assert bell.speaker.peak_hz() == pytest.approx(880.0, abs=3.0)
    assert len(bell.speaker.samples()) == pytest.approx(0.8 * AUDIO_RATE, abs=960)


async def test_while_an_owner_holds_the_speaker_the_chime_is_skipped_not_queued(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with doorbell(tmp_path) as bell, bell.client() as api:
        floor = bell.running.speakers.floor("front")
        with (
            caplog.at_level(logging.INFO, logger="hub.server.chime"),
            floor.hold("owner 3f2a talking"),
        ):
            event = await bell.press(api)  # the phones are told all the same
        assert bell.running.chimes is not None
        await bell.running.chimes.wait("front")
        assert event.data == {"camera": "front"}
        assert bell.speaker.played == []  # nothing played then, nor once the owner let go
        assert (bell.running.chimes.rung, bell.running.chimes.skipped) == (0, 1)
        assert "chime.skipped camera=front holder=owner 3f2a talking" in caplog.messages

        # A second press while the first chime still plays is skipped too: chimes never stack.
        await bell.press(api, times=2)
        await bell.running.chimes.wait("front")
    assert (bell.running.chimes.rung, bell.running.chimes.skipped) == (1, 2)
    assert len(bell.speaker.samples()) == round(1.35 * AUDIO_RATE)


async def test_chime_off_plays_nothing_on_a_press(tmp_path: Path) -> None:
    async with doorbell(tmp_path, chime="off") as bell, bell.client() as api:
        event = await bell.press(api)
        assert bell.running.chimes is None
        await api.add_reply("away", wav_tone(600.0, 0.2))
        await api.play_reply("away")  # the speaker itself works
    assert event.data == {"camera": "front"}
    assert bell.speaker.peak_hz() == pytest.approx(600.0, abs=3.0)


async def test_an_unreadable_chime_file_at_start_falls_back_to_the_built_in_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    chime = tmp_path / "chime.wav"
    chime.write_bytes(wav_tone(880.0, 0.5))
    config = ServeConfig(chime=str(chime))
    chime.write_text("gone bad since the config was loaded")
    with caplog.at_level(logging.ERROR, logger="hub.server.runtime"):
        sound = runtime._chime_sound(replace(config))
    assert sound is not None
    assert sound.duration_s == pytest.approx(1.35)
    assert caplog.messages == [
        f"chime.default_instead file={chime} error=the chime file 'chime.wav' is not a WAV "
        "(PCM) or Ogg Opus file (its first bytes are neither RIFF/WAVE nor OggS)"
    ]


async def test_replies_and_bad_uploads_never_stop_the_recording(tmp_path: Path) -> None:
    async with doorbell(tmp_path) as bell, bell.client() as api:
        before = (await api.metrics())["frames"]
        for upload in (b"not audio", wav_tone(600.0, 20.0, rate=8_000), b"OggS" + bytes(500)):
            with pytest.raises(ApiError):
                await api.add_reply("bad", upload)
        await api.add_reply("away", wav_tone(600.0, 1.0))
        await api.play_reply("away")  # a second of real time
        after = await api.metrics()
        health = await api.health()
    assert after["frames"] > before
    assert after["cameras"]["front"]["errors"] == 0
    assert health["status"] == "ok"
    assert bell.speaker.peak_hz() == pytest.approx(600.0, abs=3.0)


async def test_a_failing_speaker_costs_the_chime_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = WavSink(tmp_path / "speaker.wav")
    await sink.close()  # every chunk is refused from now on
    speakers = Speakers({"front": sink, "back": None})
    chimes = Chimes(default_chime(), speakers)
    with caplog.at_level(logging.WARNING, logger="hub.server.chime"):
        assert chimes.ring("front") is True
        assert chimes.ring("back") is False  # no speaker: nothing to ring, nothing logged
        await chimes.wait("front")
    assert (chimes.rung, chimes.skipped, chimes.failed) == (0, 0, 1)
    assert caplog.messages == [
        "chime.failed camera=front error=SpeakerError detail=the speaker is closed"
    ]
    assert speakers.floor("front").holder is None
