"""Hold-to-talk for live links (``hub.server.live.press_talk``): a real aiortc peer stands in for
the page, on a real device; its session takes the speaker only while ``POST /live/link-talk``
says the button is held, and the calls refuse bad input with clear errors."""

from __future__ import annotations

import asyncio
import fractions
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from yarl import URL

from crypto.keys import KeyBundle
from hub.client import ApiError
from hub.client.talk import TalkSound
from hub.server import appkeys
from hub.server.live.relay import LiveSession
from hub.server.routes.live import LIVE
from hub.wire.webrtc import peer_connection
from tests.hub.test_live_kit import LiveDevice, live_device

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]

_WAIT_S = 30.0


class Tone(MediaStreamTrack):
    """A page's microphone: a steady tone in 20 ms frames at 48 kHz, paced in real time. After
    ``stall_after`` frames, if given, it sends nothing more (the page or phone is gone, but its
    connection is not closed)."""

    kind = "audio"

    def __init__(self, hz: float, *, stall_after: int | None = None) -> None:
        super().__init__()
        self._hz = hz
        self._index = 0
        self._start: float | None = None
        self._stall_after = stall_after

    async def recv(self) -> av.AudioFrame:
        if self._index == self._stall_after:
            await asyncio.Event().wait()  # until the peer closes (and cancels this)
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._index * 0.02 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (self._index * 960 + np.arange(960)) / 48_000
        samples = (9000 * np.sin(2 * np.pi * self._hz * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48_000
        frame.pts = self._index * 960
        frame.time_base = fractions.Fraction(1, 48_000)
        self._index += 1
        return frame


async def _link_token(live: LiveDevice, owner: KeyBundle) -> str:
    return str(URL(await live.link_url(owner)).query["t"])


async def _post(live: LiveDevice, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(live.url + path, json=body, ssl=False) as response,
    ):
        return response.status, await response.json()


async def _page(
    live: LiveDevice, owner: KeyBundle, *, talks: bool, microphone: Tone | None = None
) -> tuple[RTCPeerConnection, dict[str, Any]]:
    """A page's session: video and sound received, the microphone (a 500 Hz tone unless
    ``microphone``) sent when ``talks``."""
    peer = peer_connection()
    peer.addTransceiver("video", direction="recvonly")
    if talks:
        audio = peer.addTransceiver(microphone or Tone(500.0), direction="sendrecv")
        audio.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"]
        )
    else:
        peer.addTransceiver("audio", direction="recvonly")
    await peer.setLocalDescription(await peer.createOffer())
    token = await _link_token(live, owner)
    status, body = await _post(
        live, "/live/link-offer", {"token": token, "sdp": peer.localDescription.sdp}
    )
    assert status == 200, body
    await peer.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))
    return peer, body


async def _until(check: Any, what: str) -> None:
    deadline = time.monotonic() + _WAIT_S
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


def _session(live: LiveDevice, session_id: str) -> LiveSession:
    return next(s for s in live.app[LIVE].sessions if s.session_id == session_id)


async def test_a_link_session_takes_the_speaker_only_while_the_button_is_held(
    tmp_path: Path,
) -> None:
    admin, owner = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data", audio=True) as live:
        live.add_owner(admin, "admin")
        live.add_owner(owner, "owner")
        floor = live.app[appkeys.SPEAKERS].floor("front")
        peer, body = await _page(live, owner, talks=True)
        session = _session(live, body["session_id"])
        talk = session.press_talk
        assert talk is not None
        # Sending sound from the start does not take the speaker: the button does.
        assert (body["talk"], floor.holder) == (True, None)
        await _until(lambda: talk.dropped_chunks >= 10, "the page's sound never arrived")
        assert live.speaker.played == []

        feed = body["feed"]
        assert await _post(live, "/live/link-talk", {"feed": feed, "talk": "yes"}) == (
            400,
            {
                "error": {
                    "code": "bad_request",
                    "message": "talk must be true (the button is held) or false (it was let go)",
                }
            },
        )
        status, refused = await _post(live, "/live/link-talk", {"feed": "x" * 32, "talk": True})
        assert (status, refused["error"]["message"]) == (
            404,
            "no live session has this feed; the session may have ended",
        )

        # Held: the page's tone plays, and the speaker is the owner's.
        assert await _post(live, "/live/link-talk", {"feed": feed, "talk": True}) == (
            200,
            {"talk": True},
        )
        assert floor.holder == f"owner {owner.key_id}"
        await _until(lambda: live.speaker.samples().size >= 24_000, "the speaker played nothing")
        assert live.speaker.peak_hz() == pytest.approx(500.0, abs=3.0)
        # Meanwhile an owner's phone that wants to talk is refused, naming who talks.
        async with live.client(admin) as api:
            with pytest.raises(ApiError) as busy:
                await api.live("front", talk=TalkSound.tone(300.0), seconds=5)
        assert (busy.value.status, busy.value.detail) == (
            409,
            f"the speaker is in use by owner {owner.key_id}; try again when they finish",
        )

        # Let go: the speaker is free again, and what the page still sends is dropped.
        assert await _post(live, "/live/link-talk", {"feed": feed, "talk": False}) == (
            200,
            {"talk": False},
        )
        await _until(lambda: floor.holder is None, "the speaker stayed taken")
        played = len(live.speaker.played)
        dropped = talk.dropped_chunks
        await _until(lambda: talk.dropped_chunks >= dropped + 25, "the page stopped sending")
        assert len(live.speaker.played) == played

        # Held again, then the owner is removed: the press ends with the session.
        assert await _post(live, "/live/link-talk", {"feed": feed, "talk": True}) == (
            200,
            {"talk": True},
        )
        async with live.client(admin) as api:
            await api.remove_owner(owner.key_id)
        await asyncio.wait_for(session.ended.wait(), _WAIT_S)
        assert floor.holder is None
        await peer.close()
        talks = [
            (e.body()["kind"], e.body().get("reason"), e.body()["via"])
            for e in live.device.audit.entries(0, live.device.audit.size)
            if e.body()["kind"].startswith("talk.")
        ]
    assert talks == [
        ("talk.started", None, "link"),
        ("talk.ended", "stopped", "link"),
        ("talk.started", None, "link"),
        ("talk.ended", "owner_removed", "link"),
    ]


async def test_a_press_whose_sound_stops_gives_the_speaker_back_and_the_session_goes_on(
    tmp_path: Path,
) -> None:
    # The page vanished mid-press (its tab was killed, the phone lost the network) without
    # letting go: its sound stops. The speaker is freed, not held until ICE consent expires.
    owner = KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data", audio=True) as live:
        live.add_owner(owner, "owner")
        floor = live.app[appkeys.SPEAKERS].floor("front")
        peer, body = await _page(live, owner, talks=True, microphone=Tone(500.0, stall_after=100))
        session = _session(live, body["session_id"])
        assert await _post(live, "/live/link-talk", {"feed": body["feed"], "talk": True}) == (
            200,
            {"talk": True},
        )
        assert floor.holder == f"owner {owner.key_id}"
        await _until(lambda: live.speaker.first_sound() is not None, "the speaker played nothing")
        await _until(lambda: floor.holder is None, "a silent press kept the speaker")
        assert session.end_reason is None  # the session itself is still up
        assert session.press_talk is not None
        assert not session.press_talk.pressed
        await peer.close()
        await asyncio.wait_for(session.ended.wait(), _WAIT_S)
        ended = [
            e.body()
            for e in live.device.audit.entries(0, live.device.audit.size)
            if e.body()["kind"] == "talk.ended"
        ]
    assert [e["reason"] for e in ended] == ["no_sound"]
    assert 0 < ended[0]["talked_ms"] <= 100 * 20


async def test_a_page_without_speaker_or_microphone_cannot_talk(tmp_path: Path) -> None:
    owner = KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data", audio=True) as live:
        live.add_owner(owner)
        peer, body = await _page(live, owner, talks=False)
        assert body["talk"] is False
        status, refused = await _post(live, "/live/link-talk", {"feed": body["feed"], "talk": True})
        assert (status, refused["error"]["message"]) == (
            400,
            "this live session does not send sound; offer to send audio (sendrecv) to talk",
        )
        await peer.close()
    async with live_device(tmp_path / "data2", speaker=False) as live:
        live.add_owner(owner)
        # A camera without a speaker still shows the page (the offer is not refused).
        peer, body = await _page(live, owner, talks=True)
        assert body["talk"] is False
        status, refused = await _post(live, "/live/link-talk", {"feed": body["feed"], "talk": True})
        assert (status, refused["error"]["code"]) == (409, "no_speaker")
        assert refused["error"]["message"].startswith("camera 'front' has no speaker")
        await peer.close()


async def test_the_page_may_use_the_microphone_and_nothing_else_new(tmp_path: Path) -> None:
    async with (
        live_device(tmp_path / "data") as live,
        aiohttp.ClientSession() as session,
        session.get(live.url + "/live/page", ssl=False) as response,
    ):
        assert response.status == 200
        headers = response.headers
    assert headers["Permissions-Policy"] == (
        "microphone=(self), camera=(), geolocation=(), display-capture=()"
    )
    # The page talks only to its doorbell, its own script only: talk adds no source.
    assert headers["Content-Security-Policy"] == (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; media-src 'self' blob:; base-uri 'none'; form-action 'none'"
    )
