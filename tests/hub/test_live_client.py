"""The Python client's live view: ``DoorwardClient.live`` watches (and hears) a real device over
WebRTC, ``live_link`` mints a link the device's page accepts once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import av
import pytest

from crypto.keys import KeyBundle
from hub.client import ApiError
from hub.server.routes.live import LIVE
from tests.hub.test_live_kit import dominant_hz, live_device, strip_counter

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


async def test_live_watches_and_hears_the_camera(tmp_path: Path) -> None:
    owner = KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data", audio=True) as live:
        live.add_owner(owner)
        counters: list[int] = []
        sounds: list[av.AudioFrame] = []
        done = asyncio.Event()

        def on_frame(picture: av.VideoFrame) -> None:
            counter = strip_counter(picture)
            if counter is not None:
                counters.append(counter)
            if len(counters) >= 10 and len(sounds) >= 30:
                done.set()

        async with live.client(owner) as api:
            stats = await api.live(
                "front", on_frame=on_frame, on_audio=sounds.append, stop=done, codec="video/VP8"
            )
            with pytest.raises(ApiError) as unknown:
                await api.live("garage", seconds=1)
        assert stats.frames >= 10
        assert stats.audio_frames == len(sounds) >= 30
        assert counters[-1] > counters[0]
        assert dominant_hz(sounds[5:]) == pytest.approx(440.0, abs=1.0)
        assert (unknown.value.status, unknown.value.detail) == (
            404,
            "no camera named 'garage'; GET /cameras lists them",
        )
        for session in live.app[LIVE].sessions:  # the device sees the hang-ups
            await asyncio.wait_for(session.ended.wait(), 30)


async def test_live_link_is_registered_for_the_first_camera_and_works_once(
    tmp_path: Path,
) -> None:
    owner = KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data") as live:
        live.add_owner(owner)
        async with live.client(owner) as api:
            before = int(time.time())
            link = await api.live_link(ttl_s=60)
            with pytest.raises(ValueError, match=r"^ttl_s must be 1-900, got 3600$"):
                await api.live_link("front", ttl_s=3600)
            session = api._ensure_session()
            token = parse_qs(urlsplit(link.url).query)["t"][0]
            statuses = []
            for _ in range(2):
                async with session.post(
                    live.url + "/live/link-offer",
                    json={"token": token, "sdp": "hello"},
                    ssl=api._ssl,
                ) as response:
                    statuses.append((response.status, (await response.json())["error"]["code"]))
        assert urlsplit(link.url).path == "/live/page"
        assert before + 60 <= link.expires_s <= int(time.time()) + 60
        assert "t=" not in repr(link)  # the link carries the token: not in reprs
        # The first use consumed the link (the nonsense offer was then refused); the second is
        # refused as a reuse.
        assert statuses == [(400, "bad_request"), (409, "token_replayed")]
