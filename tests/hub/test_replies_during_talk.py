"""One thing plays at a time: while an owner talks back over live view (real aiortc peers, the
real device), another owner's quick reply is refused naming the talker and a press does not
chime; once the talk ends the reply plays."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from crypto.keys import KeyBundle
from hub.client import ApiError
from hub.client.talk import TalkSound
from hub.server import appkeys
from hub.server.chime import Chimes, default_chime
from hub.server.routes.live import LIVE
from tests.hub.soundkit import wav_tone
from tests.hub.test_live_kit import live_device

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]


async def test_a_talking_owner_keeps_the_speaker_from_replies_and_the_chime(
    tmp_path: Path,
) -> None:
    ada, bob = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data") as live:
        live.add_owner(ada, "ada")
        live.add_owner(bob, "bob")
        bus = live.app[appkeys.BUS]
        talking = bus.subscribe(frozenset({"talk.started", "talk.ended"}))
        assert talking is not None
        speakers = live.app[appkeys.SPEAKERS]
        chimes = Chimes(default_chime(), speakers)
        async with live.client(bob) as bob_api:
            await bob_api.add_reply("away", wav_tone(700.0, 0.5))
            stop = asyncio.Event()
            async with live.client(ada) as ada_api:
                talk = asyncio.ensure_future(
                    ada_api.live("front", stop=stop, talk=TalkSound.tone(440.0), seconds=60)
                )
                try:
                    started = await asyncio.wait_for(talking.get(), 30)
                    assert started is not None
                    assert started.kind == "talk.started"  # Ada holds the speaker now
                    with pytest.raises(ApiError) as busy:
                        await bob_api.play_reply("away")
                    rang = chimes.ring("front")
                    # The device ends the session (as at its time limit): the talk ends with it.
                    sessions = live.app[LIVE]
                    await sessions.end(sessions.sessions[0], "expired")
                    ended = await asyncio.wait_for(talking.get(), 30)
                    assert ended is not None
                    assert ended.kind == "talk.ended"
                finally:
                    stop.set()
                    talk.cancel()  # the phone hangs up (its own session view may lag)
                    with contextlib.suppress(asyncio.CancelledError):
                        await talk
            assert speakers.floor("front").holder is None
            since = time.monotonic()
            await bob_api.play_reply("away")
        entries = [e.body() for e in live.device.audit.entries(0, live.device.audit.size)]
    assert (busy.value.status, busy.value.code) == (409, "speaker_busy")
    assert busy.value.detail == (
        f"the speaker of camera 'front' is in use by owner {ada.key_id}; try again when they finish"
    )
    assert rang is False
    assert (chimes.rung, chimes.skipped) == (0, 1)
    assert live.speaker.peak_hz(since) == pytest.approx(700.0, abs=3.0)
    assert [e["owner_key_id"] for e in entries if e["kind"] == "reply.played"] == [bob.key_id]
