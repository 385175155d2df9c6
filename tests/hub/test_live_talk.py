"""Talking back over live view: real aiortc peers on loopback to a real device (TLS, the real
pipeline and relay); the owner's Opus reaches the camera's simulated speaker, one talker at a
time, the microphone is ducked meanwhile, and every talk is audited."""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import AudioStreamTrack, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from crypto.keys import KeyBundle
from hub.cli.cmd_owner_live import _tone_hz
from hub.client import ApiError
from hub.client.talk import TalkFileError, TalkSound
from hub.server import appkeys
from hub.server.live.webrtc import _mono_chunk
from hub.server.routes.live import LIVE
from hub.wire.webrtc import peer_connection
from tests.hub.hubkit import run_owner_cli
from tests.hub.test_live import HandTimer
from tests.hub.test_live_cli import _cli, _profile
from tests.hub.test_live_kit import SCENARIO, LiveDevice, live_device, mono, serving
from tests.hub.test_live_press_talk import Tone

pytestmark = pytest.mark.timeout(90)


def write_tone_wav(path: Path, hz: float, seconds: float, rate: int = 44_100) -> None:
    """A 16-bit stereo WAV of a sine tone (another rate and layout than the device's)."""
    t = np.arange(round(seconds * rate)) / rate
    left = (9000 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.column_stack([left, left]).tobytes())


def loud(frame: av.AudioFrame) -> bool:
    return float(np.sqrt(np.mean(mono(frame) ** 2))) > 1000.0


async def _audit(live: LiveDevice, *kinds: str) -> list[dict[str, Any]]:
    """The audit entries of ``kinds``, once every session has ended."""
    sessions = live.app[LIVE]
    while sessions.sessions:
        await asyncio.wait_for(sessions.sessions[0].ended.wait(), 30)
    entries = [e.body() for e in live.device.audit.entries(0, live.device.audit.size)]
    return [e for e in entries if e["kind"] in kinds]


@pytest.mark.asyncio
async def test_an_owners_file_plays_on_the_speaker_and_the_microphone_is_ducked_meanwhile(
    tmp_path: Path,
) -> None:
    owner = KeyBundle.generate("x25519")
    sound = tmp_path / "hello.wav"
    write_tone_wav(sound, 660.0, 1.5)
    async with live_device(tmp_path / "data", audio=True) as live:
        live.add_owner(owner)
        events = live.app[appkeys.BUS].subscribe(frozenset({"talk.started", "talk.ended"}))
        assert events is not None
        heard: list[av.AudioFrame] = []
        back = asyncio.Event()  # the doorbell's own sound is heard again after the talk
        sent_at: list[float] = []

        def on_audio(frame: av.AudioFrame) -> None:
            heard.append(frame)
            talked = live.speaker.samples().size >= 48_000
            free = live.app[appkeys.SPEAKERS].floor("front").holder is None
            if talked and free and sum(loud(f) for f in heard[-25:]) == 25:
                back.set()

        async with live.client(owner) as api:
            stats = await api.live(
                "front",
                on_audio=on_audio,
                stop=back,
                talk=TalkSound.from_file(sound),
                on_talk_start=sent_at.append,
                seconds=60,
            )
        assert back.is_set()
        assert stats.frames > 0
        # The file (44.1 kHz stereo, sent as Opus) played on the speaker at its pitch, and
        # about as long as it is.
        speaker = live.speaker
        onset = speaker.first_sound()
        assert onset is not None
        assert sent_at
        assert onset > sent_at[0]
        assert speaker.peak_hz(onset + 0.1) == pytest.approx(660.0, abs=3.0)
        loud_s = np.count_nonzero(np.abs(speaker.samples()) > 1000) / 48_000
        assert loud_s == pytest.approx(1.5 * 0.93, abs=0.05)  # |sin| > 1/9 93 % of the time
        # Ducking: while the owner talked the camera's 440 Hz was replaced by silence, so the
        # session's own sound started silent and came back once the talk ended.
        feed = live.relay.audio("front")
        assert feed is not None
        assert feed.ducked_chunks >= 50
        first_loud = next(i for i, f in enumerate(heard) if loud(f))
        assert first_loud >= 50  # a second and more of silence, then the doorbell again
        assert not any(loud(f) for f in heard[10:first_loud])
        pcm = np.concatenate([mono(f) for f in heard[first_loud + 5 :]])
        spectrum = np.abs(np.fft.rfft(pcm))
        assert np.argmax(spectrum) * 48_000 / pcm.size == pytest.approx(440.0, abs=2.0)
        entries = await _audit(live, "talk.started", "talk.ended", "live.started")
    started, talk_started, talk_ended = entries
    assert started["talk"] is True
    session_id = started["session_id"]
    assert {k: talk_started[k] for k in ("session_id", "camera", "owner_key_id", "via")} == {
        "session_id": session_id,
        "camera": "front",
        "owner_key_id": owner.key_id,
        "via": "owner",
    }
    assert talk_ended["reason"] == "stopped"  # the file ran out: the owner stopped talking
    assert talk_ended["owner_key_id"] == owner.key_id
    assert talk_ended["talked_ms"] == pytest.approx(1500, abs=200)
    assert talk_started["time"] <= talk_ended["time"]
    kinds = []
    async for event in events:
        kinds.append(event.kind)
        if len(kinds) == 2:
            break
    assert kinds == ["talk.started", "talk.ended"]


@pytest.mark.asyncio
async def test_a_second_talker_is_refused_naming_the_holder_and_removal_ends_the_talk(
    tmp_path: Path,
) -> None:
    admin, guest = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data", audio=True) as live:
        live.add_owner(admin, "admin")
        live.add_owner(guest, "guest")
        floor = live.app[appkeys.SPEAKERS].floor("front")
        playing = asyncio.Event()

        def on_audio(_: av.AudioFrame) -> None:
            if live.speaker.first_sound() is not None:
                playing.set()

        async with live.client(guest) as guest_api, live.client(admin) as admin_api:
            talking = asyncio.ensure_future(
                guest_api.live("front", on_audio=on_audio, talk=TalkSound.tone(500.0))
            )
            await asyncio.wait_for(playing.wait(), 30)
            assert floor.holder == f"owner {guest.key_id}"
            with pytest.raises(ApiError) as refused:
                await admin_api.live("front", talk=TalkSound.tone(300.0), seconds=5)
            assert (refused.value.status, refused.value.code) == (409, "speaker_busy")
            assert refused.value.detail == (
                f"the speaker is in use by owner {guest.key_id}; try again when they finish"
            )
            # The refused owner can still watch (an offer that only receives).
            seen = asyncio.Event()
            stats = await admin_api.live("front", on_frame=lambda _: seen.set(), stop=seen)
            assert stats.frames >= 1
            session = next(s for s in live.app[LIVE].sessions if s.talk is not None)
            await admin_api.remove_owner(guest.key_id)
            await asyncio.wait_for(session.ended.wait(), 30)
            await asyncio.wait_for(talking, 60)
            # A removed owner's next talk offer is refused before it touches the speaker.
            with pytest.raises(ApiError) as gone:
                await guest_api.live("front", talk=TalkSound.tone(500.0), seconds=1)
            assert (gone.value.status, gone.value.code) == (403, "unknown_key")
        assert session.end_reason == "owner_removed"
        assert session.talk_end_reason == "owner_removed"
        assert floor.holder is None
        assert live.speaker.peak_hz() == pytest.approx(500.0, abs=3.0)
        entries = await _audit(live, "talk.started", "talk.ended")
    assert [(e["kind"], e["owner_key_id"]) for e in entries] == [
        ("talk.started", guest.key_id),
        ("talk.ended", guest.key_id),
    ]
    assert entries[1]["reason"] == "owner_removed"


@pytest.mark.asyncio
async def test_talk_offers_without_opus_or_to_a_camera_without_speaker_are_refused(
    tmp_path: Path,
) -> None:
    owner = KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data", audio=True) as live:
        live.add_owner(owner)
        peer = peer_connection()
        peer.addTransceiver("video", direction="recvonly")
        pcmu = peer.addTransceiver(AudioStreamTrack(), direction="sendrecv")
        pcmu.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/PCMU"]
        )
        await peer.setLocalDescription(await peer.createOffer())
        async with live.client(owner) as api:
            with pytest.raises(ApiError) as not_opus:
                await api.live_offer(peer.localDescription.sdp, camera="front")
        await peer.close()
        assert (not_opus.value.status, not_opus.value.detail) == (
            400,
            "talking back needs Opus audio, but the offer sends PCMU; offer audio/opus "
            "(48000 Hz), or receive only",
        )
        assert live.app[LIVE].sessions == ()
        assert live.app[appkeys.SPEAKERS].floor("front").holder is None
    async with live_device(tmp_path / "data2", speaker=False) as live:
        live.add_owner(owner)
        async with live.client(owner) as api:
            with pytest.raises(ApiError) as mute:
                await api.live("front", talk=TalkSound.tone(440.0), seconds=5)
            assert (mute.value.status, mute.value.code) == (409, "no_speaker")
            assert mute.value.detail.startswith("camera 'front' has no speaker; name one under")
            assert live.app[LIVE].sessions == ()
            assert live.relay.viewer_count() == 0


def test_bad_sound_files_are_refused_before_any_call(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("not a sound at all\n")
    with pytest.raises(TalkFileError) as not_audio:
        TalkSound.from_file(text)
    assert str(not_audio.value) == (
        f"{text} is not a sound file ffmpeg can read; give a WAV file (for instance 16-bit "
        "PCM, any rate, mono or stereo)"
    )
    with pytest.raises(TalkFileError, match=r": no such file$"):
        TalkSound.from_file(tmp_path / "missing.wav")
    with pytest.raises(TalkFileError, match=r": it is a folder, not a sound file$"):
        TalkSound.from_file(tmp_path)
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as silent:
        silent.setnchannels(1)
        silent.setsampwidth(2)
        silent.setframerate(48_000)
    with pytest.raises(TalkFileError, match=r"holds no sound"):
        TalkSound.from_file(empty)
    long = tmp_path / "long.wav"
    write_tone_wav(long, 440.0, 2.0)
    with pytest.raises(TalkFileError, match=r"is longer than 1 s; cut it shorter"):
        TalkSound.from_file(long, max_s=1.0)
    sound = TalkSound.from_file(long)
    assert sound.seconds == pytest.approx(2.0, abs=0.01)
    with pytest.raises(ValueError, match=r"^tone_hz must be between 20 and 24000"):
        TalkSound.tone(5.0)
    # The command line checks the file before it opens the profile or calls the device.
    code, _, err = run_owner_cli(
        ["live", "--profile", str(tmp_path / "no-profile"), "--talk", str(text)]
    )
    assert code != 0
    assert f"--talk: {text} is not a sound file ffmpeg can read" in err
    with pytest.raises(SystemExit) as usage:  # argparse's own usage error
        run_owner_cli(["live", "--talk-tone", "3"])
    assert usage.value.code == 2
    with pytest.raises(argparse.ArgumentTypeError) as tone:
        _tone_hz("3")
    assert str(tone.value) == "must be a frequency from 20 to 20000 Hz, got '3'"


@pytest.mark.slow
@pytest.mark.asyncio
async def test_the_command_line_talks_with_a_file_and_is_told_who_holds_the_floor(
    tmp_path: Path,
) -> None:
    sound = tmp_path / "hello.wav"
    write_tone_wav(sound, 750.0, 1.0)
    async with live_device(tmp_path / "data", audio=True) as live:
        profile, _ = _profile(tmp_path, live)
        status, stdout, stderr = await _cli(
            "live", "--profile", str(profile), "--seconds", "3", "--talk", str(sound), "--json"
        )
        assert (status, stderr) == (0, "")
        assert json.loads(stdout)["talk"] == "hello.wav"
        assert live.speaker.peak_hz() == pytest.approx(750.0, abs=3.0)
        # Someone else holds the speaker (a quick reply, say): the talk is refused, named.
        claim = live.app[appkeys.SPEAKERS].claim("front", "quick reply 'away'")
        try:
            status, _, stderr = await _cli(
                "live", "--profile", str(profile), "--seconds", "3", "--talk-tone", "500"
            )
        finally:
            claim.release()
        assert status == 1
        assert "the speaker is in use by quick reply 'away'; try again when they finish" in stderr


@pytest.mark.asyncio
async def test_doorward_serve_plays_an_owner_on_the_configured_speaker_and_ducks(
    tmp_path: Path,
) -> None:
    scenario = tmp_path / "cam.toml"
    scenario.write_text(SCENARIO + "audio = true\n")
    async with serving(tmp_path, f"front=simulated:{scenario}") as served:
        assert served.running is not None
        speaker = served.running.speakers.simulated("front")
        heard: list[av.AudioFrame] = []
        enough = asyncio.Event()

        def on_audio(frame: av.AudioFrame) -> None:
            heard.append(frame)
            if speaker.samples().size >= 48_000:
                enough.set()

        async with served.client() as api:
            await api.live(
                "front", on_audio=on_audio, stop=enough, talk=TalkSound.tone(620.0), seconds=60
            )
        onset = speaker.first_sound()
        assert onset is not None
        assert speaker.peak_hz(onset + 0.1) == pytest.approx(620.0, abs=3.0)
        # The device ducked its own microphone (the scenario's 440 Hz) while the owner talked.
        assert len(heard) >= 25
        assert not any(loud(f) for f in heard[10:])


class FloodTrack(AudioStreamTrack):
    """A phone that sends ``count`` chunks of a tone as fast as its sender takes them."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self._left = count
        self._pts = 0
        self.done = asyncio.Event()

    async def recv(self) -> av.AudioFrame:
        if self._left == 0:
            self.done.set()
            self.stop()
            raise MediaStreamError("done")
        self._left -= 1
        t = (self._pts + np.arange(960)) / 48_000
        samples = (9000 * np.sin(2 * np.pi * 400.0 * t)).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48_000, self._pts
        frame.time_base = fractions.Fraction(1, 48_000)
        self._pts += 960
        await asyncio.sleep(0)
        return frame


@pytest.mark.asyncio
async def test_a_phone_that_goes_silent_mid_talk_gives_the_speaker_back_to_the_next_owner(
    tmp_path: Path,
) -> None:
    # The phone's app froze or lost the network without hanging up: its sound stops, its peer
    # stays open. The speaker is freed for the next owner instead of being held until ICE
    # consent expires (or, while the connection lives, all session).
    owner, other = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data") as live:
        live.add_owner(owner)
        live.add_owner(other, "other")
        floor = live.app[appkeys.SPEAKERS].floor("front")
        peer = peer_connection()
        peer.addTransceiver("video", direction="recvonly")
        sending = peer.addTransceiver(Tone(450.0, stall_after=75), direction="sendrecv")
        sending.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"]
        )
        await peer.setLocalDescription(await peer.createOffer())
        async with live.client(owner) as api:
            answer = await api.live_offer(peer.localDescription.sdp, camera="front")
        await peer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        session = live.app[LIVE].sessions[0]
        assert floor.holder == f"owner {owner.key_id}"
        assert session.talk_task is not None
        await asyncio.wait_for(session.talk_task, 30)
        assert (session.talk_end_reason, session.end_reason) == ("no_sound", None)
        assert floor.holder is None
        assert live.speaker.peak_hz() == pytest.approx(450.0, abs=3.0)
        # The next owner takes the speaker while the silent phone's session is still up.
        async with live.client(other) as api:
            stats = await api.live("front", talk=TalkSound.tone(300.0), seconds=1.0)
        assert stats.frames >= 1
        await peer.close()
        entries = await _audit(live, "talk.ended")
    assert [e["owner_key_id"] for e in entries] == [owner.key_id, other.key_id]
    assert entries[0]["reason"] == "no_sound"  # the next one hung up or stopped: either is fine
    assert 0 < entries[0]["talked_ms"] <= 75 * 20


@pytest.mark.asyncio
async def test_a_phone_sending_faster_than_real_time_is_held_to_half_a_second(
    tmp_path: Path,
) -> None:
    owner = KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data") as live:
        live.add_owner(owner)
        peer = peer_connection()
        peer.addTransceiver("video", direction="recvonly")
        flood = FloodTrack(500)  # ten seconds of sound, sent in a burst
        sending = peer.addTransceiver(flood, direction="sendrecv")
        sending.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"]
        )
        await peer.setLocalDescription(await peer.createOffer())
        async with live.client(owner) as api:
            answer = await api.live_offer(peer.localDescription.sdp, camera="front")
        await peer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.wait_for(flood.done.wait(), 30)
        await sending.sender.stop()  # RTCP BYE: the owner stopped talking
        session = live.app[LIVE].sessions[0]
        assert session.talk_task is not None
        await asyncio.wait_for(session.talk_task, 30)
        await peer.close()
        assert session.talk_end_reason == "stopped"
        # Ten seconds went out in a burst; the device kept at most half a second of it waiting
        # for the speaker, which played in real time, and dropped the rest (oldest first):
        # what played and what was dropped add up to what arrived.
        dropped = session.talk_sound.dropped
        played = round(session.talk_seconds / 0.02)
        assert dropped > 0
        assert played + dropped <= 500
        assert live.speaker.samples().size == played * 960
        entries = await _audit(live, "talk.ended")
    assert entries[0]["dropped_ms"] == dropped * 20
    assert entries[0]["talked_ms"] == played * 20


@pytest.mark.asyncio
async def test_a_talk_ends_with_its_session_at_the_maximum_and_recording_goes_on(
    tmp_path: Path,
) -> None:
    owner = KeyBundle.generate("x25519")
    timer = HandTimer()
    async with live_device(tmp_path / "data", sleep=timer.sleep) as live:
        live.add_owner(owner)
        playing = asyncio.Event()
        captured: list[int] = []

        def on_frame(_: av.VideoFrame) -> None:
            if live.speaker.first_sound() is not None and not captured:
                captured.append(live.source.captured)  # the owner is heard
            if live.speaker.samples().size >= 24_000 and not playing.is_set():
                captured.append(live.source.captured)  # half a second later
                playing.set()

        async with live.client(owner) as api:
            talking = asyncio.ensure_future(
                api.live("front", on_frame=on_frame, talk=TalkSound.tone(350.0))
            )
            await asyncio.wait_for(playing.wait(), 30)
            session = live.app[LIVE].sessions[0]
            timer.fire.set()  # the session's maximum is up
            await asyncio.wait_for(session.ended.wait(), 30)
            await asyncio.wait_for(talking, 60)
        assert (session.end_reason, session.talk_end_reason) == ("max_duration", "max_duration")
        assert live.app[appkeys.SPEAKERS].floor("front").holder is None
        # The pipeline went on taking the camera's frames while the owner talked, error-free.
        assert captured[1] > captured[0]
        assert live.pipeline.stats.frames >= captured[1]
        assert live.pipeline.stats.errors == 0


@pytest.mark.parametrize(
    ("fmt", "layout"), [("s16", "stereo"), ("s16p", "stereo"), ("s16", "mono"), ("fltp", "stereo")]
)
def test_the_owners_frames_are_mixed_to_mono_by_averaging_their_channels(
    fmt: str, layout: str
) -> None:
    # aiortc's Opus decoder hands packed 16-bit stereo; other layouts and sample formats are
    # converted first. Left and right differ, so taking one channel would be caught.
    left = np.array([1000, -3000, 32767, -32768] * 240, dtype=np.int16)
    right = np.array([3000, -1001, 32767, -32768] * 240, dtype=np.int16)
    channels = [left] if layout == "mono" else [left, right]
    if fmt == "s16":
        data = np.column_stack(channels).reshape(1, -1)
    elif fmt == "s16p":
        data = np.vstack(channels)
    else:
        data = np.vstack(channels).astype(np.float32) / 32768
    frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
    frame.sample_rate, frame.pts = 48_000, 4800
    frame.time_base = fractions.Fraction(1, 48_000)
    chunk = _mono_chunk(frame)
    expected = np.floor(np.mean([c.astype(np.int32) for c in channels], axis=0))
    assert chunk.samples.dtype == np.int16
    assert chunk.samples.shape == (960,)
    assert np.abs(chunk.samples.astype(np.int32) - expected).max() <= 1
    assert (chunk.pts_s, chunk.sample_rate) == (0.1, 48_000)
