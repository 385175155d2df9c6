"""Live view over WebRTC to owners: real aiortc peers on loopback, a real-time simulated camera
recorded by a real pipeline; frames reach viewers through the relay, never a second capture."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest

from crypto.keys import KeyBundle
from hub.client import ApiError, DoorwardClient
from hub.client.live import receive_live
from hub.server import appkeys
from hub.server.live.relay import LiveConfig
from hub.server.routes.live import LIVE
from tests.hardware._media import write_video_with_tone
from tests.hub.test_live_kit import (
    SCENARIO,
    LiveDevice,
    dominant_hz,
    live_device,
    serving,
    strip_counter,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


def _counter_sink(counters: list[int], enough: int, done: asyncio.Event):
    def on_frame(picture: av.VideoFrame) -> None:
        counter = strip_counter(picture)
        if counter is not None:
            counters.append(counter)
        if len(counters) >= enough:
            done.set()

    return on_frame


async def test_owner_receives_frames_whose_strip_counter_advances(tmp_path: Path) -> None:
    owner = KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data") as live:
        live.add_owner(owner)
        events = live.app[appkeys.BUS].subscribe(frozenset({"live.started", "live.ended"}))
        assert events is not None
        counters: list[int] = []
        done = asyncio.Event()
        answers: list[str] = []
        sounds: list[av.AudioFrame] = []

        async def offer(api: DoorwardClient, sdp: str) -> str:
            answers.append(await api.live_offer(sdp, camera="front"))
            return answers[-1]

        async with live.client(owner) as api:
            frames = await receive_live(
                lambda sdp: offer(api, sdp),
                on_frame=_counter_sink(counters, 10, done),
                on_audio=sounds.append,
                stop=done,
            )
        assert frames >= 10
        # The camera has no microphone: the answer sends no sound, though the offer asked.
        assert "m=audio" in answers[0]
        assert "a=sendonly" not in answers[0].split("m=audio", 1)[1]
        assert sounds == []
        assert len(counters) >= 10
        assert counters == sorted(counters)
        assert counters[-1] > counters[0]
        # The audit log and the session table tell the story once the device sees the hang-up.
        sessions = live.app[LIVE]
        while sessions.sessions:
            await asyncio.wait_for(sessions.sessions[0].ended.wait(), 30)
        kinds = [e.body() for e in live.device.audit.entries(0, live.device.audit.size)]
        started = [e for e in kinds if e["kind"] == "live.started"]
        ended = [e for e in kinds if e["kind"] == "live.ended"]
        assert [
            (e["camera"], e["owner_key_id"], e["via"], e["encoding"], e["audio"]) for e in started
        ] == [("front", owner.key_id, "owner", "shared_h264", False)]
        assert [(e["session_id"], e["reason"]) for e in ended] == [
            (started[0]["session_id"], "hangup")
        ]
        # Owners watching the event stream saw the same two moments.
        streamed = [await asyncio.wait_for(events.get(), 10) for _ in range(2)]
        assert [(e.kind, e.data["session_id"]) for e in streamed if e is not None] == [
            ("live.started", started[0]["session_id"]),
            ("live.ended", started[0]["session_id"]),
        ]


@pytest.mark.parametrize(("codec", "feed_codec"), [(None, "h264"), ("video/VP8", "vp8")])
@pytest.mark.slow
async def test_two_viewers_cost_one_capture_and_one_encode(
    tmp_path: Path, codec: str | None, feed_codec: str
) -> None:
    owner = KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data") as live:
        live.add_owner(owner)
        results: list[list[int]] = [[], []]
        events = [asyncio.Event(), asyncio.Event()]
        async with live.client(owner) as api:
            await asyncio.gather(
                *(
                    receive_live(
                        api.live_offer,
                        on_frame=_counter_sink(results[i], 15, events[i]),
                        stop=events[i],
                        codec=codec,
                    )
                    for i in range(2)
                )
            )
        # One open of the camera, and every frame it captured went through the pipeline once.
        assert live.source.opened == 1
        # (At most one frame is between the camera and the relay: the one the pipeline holds.)
        processed = live.pipeline.stats.frames
        assert processed <= live.source.captured <= processed + 1
        assert processed - 1 <= live.relay.frames_in["front"] <= processed
        # One encode in the viewers' codec served both: each captured frame was encoded at most
        # once (or skipped while the encoder was busy); nothing was encoded in the other codec.
        feed = live.relay.feed("front", feed_codec)
        assert feed.encoded_frames >= 15
        assert feed.encoded_frames + feed.skipped_frames <= live.relay.frames_in["front"]
        assert feed.passed_through == 0
        other = live.relay.feed("front", "vp8" if feed_codec == "h264" else "h264")
        assert other.encoded_frames == 0
        # Both viewers saw pictures of that one capture: counters no camera frame lacks.
        for counters in results:
            assert len(counters) >= 15
            assert counters == sorted(counters)
            assert counters[-1] > counters[0]
            assert max(counters) < live.source.captured
        assert [e["encoding"] for e in await _started(live)] == [f"shared_{feed_codec}"] * 2


@pytest.mark.slow
async def test_the_camera_tone_reaches_every_listener_from_one_capture(tmp_path: Path) -> None:
    owner = KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data", audio=True) as live:
        live.add_owner(owner)
        sounds: list[list[av.AudioFrame]] = [[], []]
        enough = [asyncio.Event(), asyncio.Event()]

        def listener(i: int) -> Callable[[av.AudioFrame], None]:
            def on_audio(frame: av.AudioFrame) -> None:
                sounds[i].append(frame)
                if len(sounds[i]) >= 50:  # a second of sound
                    enough[i].set()

            return on_audio

        async with live.client(owner) as api:
            await asyncio.gather(
                *(
                    receive_live(api.live_offer, on_audio=listener(i), stop=enough[i])
                    for i in range(2)
                )
            )
        for heard in sounds:
            assert dominant_hz(heard[10:]) == pytest.approx(440.0, abs=1.0)
        # The microphone was read once for both: every chunk it made went through the one feed.
        feed = live.relay.audio("front")
        assert feed is not None
        microphone = live.microphone
        assert microphone is not None
        assert feed.chunks_in == feed.encoded_chunks == microphone.captured >= 50
        assert [e["audio"] for e in await _started(live)] == [True, True]
        assert feed.viewer_count == 0


async def test_unsigned_and_non_owner_offers_are_refused(tmp_path: Path) -> None:
    owner, stranger = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data") as live:
        live.add_owner(owner)
        async with live.client(stranger) as api:
            with pytest.raises(ApiError) as refused:
                await api.live_offer("v=0\r\n")
        assert (refused.value.status, refused.value.code) == (403, "unknown_key")
        async with live.client(owner) as api:
            session = api._ensure_session()
            async with session.post(
                live.url + "/live/offer", json={"sdp": "v=0\r\n"}, ssl=api._ssl
            ) as response:
                assert response.status == 401
                assert (await response.json())["error"]["code"] == "unsigned"
            with pytest.raises(ApiError) as bad:
                await api.live_offer("hello")
            assert (bad.value.status, bad.value.detail) == (
                400,
                "sdp must be an SDP offer (text starting with v=0)",
            )
            with pytest.raises(ApiError) as unknown:
                await api.live_offer("v=0\r\n", camera="garage")
            assert (unknown.value.status, unknown.value.detail) == (
                404,
                "no camera named 'garage'; GET /cameras lists them",
            )
        assert live.app[LIVE].sessions == ()
        assert live.relay.viewer_count() == 0


async def test_removing_the_owner_ends_the_session(tmp_path: Path) -> None:
    admin, owner = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data") as live:
        live.add_owner(admin, "admin")
        live.add_owner(owner, "guest")
        first = asyncio.Event()
        async with live.client(owner) as api, live.client(admin) as admin_api:
            watching = asyncio.ensure_future(
                receive_live(api.live_offer, on_frame=lambda _: first.set())
            )
            await asyncio.wait_for(first.wait(), 30)
            session = live.app[LIVE].sessions[0]
            await admin_api.remove_owner(owner.key_id)
            await asyncio.wait_for(session.ended.wait(), 30)
            frames = await asyncio.wait_for(watching, 60)
        assert session.end_reason == "owner_removed"
        assert frames >= 1
        assert live.relay.viewer_count() == 0


async def _started(live: LiveDevice) -> list[dict[str, Any]]:
    """The ``live.started`` audit entries, once every session has ended."""
    sessions = live.app[LIVE]
    while sessions.sessions:
        await asyncio.wait_for(sessions.sessions[0].ended.wait(), 30)
    entries = [e.body() for e in live.device.audit.entries(0, live.device.audit.size)]
    return [e for e in entries if e["kind"] == "live.started"]


class HandTimer:
    """A session timer the test runs out by hand: records what was asked, waits for ``fire``."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self.fire = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self.fire.wait()


async def test_sessions_are_capped_and_end_after_the_maximum(tmp_path: Path) -> None:
    owner = KeyBundle.generate("x25519")
    config = LiveConfig(max_viewers=1, max_session_s=120.0)
    timer = HandTimer()
    async with live_device(tmp_path / "data", config=config, sleep=timer.sleep) as live:
        live.add_owner(owner)
        first = asyncio.Event()
        async with live.client(owner) as api:
            watching = asyncio.ensure_future(
                receive_live(api.live_offer, on_frame=lambda _: first.set())
            )
            await asyncio.wait_for(first.wait(), 30)
            with pytest.raises(ApiError) as busy:
                await receive_live(api.live_offer)
            assert (busy.value.status, busy.value.code) == (409, "busy")
            assert busy.value.detail == (
                "1 viewers are already watching; try again when one hangs up"
            )
            session = live.app[LIVE].sessions[0]
            assert timer.asked == [120.0]
            assert not session.ended.is_set()
            timer.fire.set()  # the two minutes are up
            await asyncio.wait_for(session.ended.wait(), 30)
            await asyncio.wait_for(watching, 60)
        assert session.end_reason == "max_duration"


@pytest.mark.slow
async def test_doorward_serve_relays_its_pipelines_to_live_view(tmp_path: Path) -> None:
    scenario = tmp_path / "cam.toml"
    scenario.write_text(SCENARIO + "audio = true\n")
    async with serving(tmp_path, f"front=simulated:{scenario}", live_max_viewers=1) as served:
        counters: list[int] = []
        sounds: list[av.AudioFrame] = []
        done = asyncio.Event()
        async with served.client() as api:
            sink = _counter_sink(counters, 15, done)
            watching_now = asyncio.Event()

            def on_frame(picture: av.VideoFrame) -> None:
                watching_now.set()
                sink(picture)

            watching = asyncio.ensure_future(
                receive_live(
                    lambda sdp: api.live_offer(sdp, camera="front"),
                    on_frame=on_frame,
                    on_audio=sounds.append,
                    stop=done,
                )
            )
            await asyncio.wait_for(watching_now.wait(), 60)
            # The config's live_max_viewers (1) is what the device enforces.
            with pytest.raises(ApiError) as busy:
                await api.live_offer("v=0\r\n", camera="front")
            assert (busy.value.status, busy.value.code) == (409, "busy")
            await asyncio.wait_for(watching, 60)
            link = await api.live_link("front")
        assert counters[-1] > counters[0]
        # The simulated camera's microphone went out with the pictures.
        assert dominant_hz(sounds[5:]) == pytest.approx(440.0, abs=1.0)
        # The page is served on its own port (a certificate browsers accept).
        assert link.url.startswith("https://127.0.0.1:")
        assert not link.url.startswith(served.url + "/")


@pytest.mark.slow
async def test_an_h264_camera_is_passed_through_and_a_peer_without_h264_gets_vp8(
    tmp_path: Path,
) -> None:
    owner = KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data", h264=True) as live:
        live.add_owner(owner)
        counters: list[int] = []
        done = asyncio.Event()
        async with live.client(owner) as api:
            await receive_live(
                api.live_offer,
                on_frame=_counter_sink(counters, 5, done),
                stop=done,
            )
            feed = live.relay.feed("front", "h264")
            # The camera's own access units went out as they were: nothing was encoded.
            assert feed.passed_through > 0
            assert feed.encoded_frames == 0
            assert counters[-1] > counters[0]
            vp8: list[int] = []
            done = asyncio.Event()
            await receive_live(
                api.live_offer,
                on_frame=_counter_sink(vp8, 5, done),
                stop=done,
                codec="video/VP8",
            )
            assert vp8[-1] > vp8[0]
        assert [e["encoding"] for e in await _started(live)] == ["passthrough_h264", "shared_vp8"]


@pytest.mark.slow
async def test_a_video_file_camera_with_sound_is_heard_in_live_view(tmp_path: Path) -> None:
    # A real source's sound track (here an MP4 with AAC) reaches live view like the simulated
    # microphone's tone: decoded once on the camera's worker, encoded once to Opus.
    video = tmp_path / "door.mp4"
    write_video_with_tone(video, seconds=4)
    async with serving(tmp_path, f"porch={video}") as served:
        sounds: list[av.AudioFrame] = []
        heard = asyncio.Event()

        def on_audio(frame: av.AudioFrame) -> None:
            sounds.append(frame)
            if len(sounds) >= 60:
                heard.set()

        async with served.client() as api:
            stats = await api.live("porch", on_audio=on_audio, stop=heard, seconds=60)
    assert stats.frames > 0
    assert len(sounds) >= 60
    # The file loops every 4 s: the jump in phase where it restarts smears the peak a little.
    assert dominant_hz(sounds[10:]) == pytest.approx(440.0, abs=5.0)
