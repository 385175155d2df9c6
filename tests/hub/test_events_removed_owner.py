"""A removed owner's ``/events`` WebSocket is closed at once and gets no later event. Real TLS on
127.0.0.1."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import aiohttp
import pytest

from crypto.keys import KeyBundle
from crypto.tls import client_context
from hub.client import ApiError, EventMessage
from hub.server import appkeys
from hub.wire.events import CLOSE_OWNER_REMOVED
from hub.wire.httpsig import sign_http_request
from tests.hub.hubkit import running_device

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


async def test_removed_owner_event_stream_is_closed(tmp_path: Path) -> None:
    admin, phone = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with running_device(tmp_path / "data") as running:
        running.add_owner(admin, "admin")
        running.add_owner(phone, "second phone")
        bus = running.app[appkeys.BUS]
        async with running.client(admin) as api, running.client(phone) as removed:
            received: list[EventMessage] = []
            got_first = asyncio.Event()

            async def listen() -> None:
                async for event in removed.events(("doorbell.pressed",)):
                    received.append(event)
                    got_first.set()

            listening = asyncio.ensure_future(listen())
            await asyncio.wait_for(bus.wait_for_subscriber(), 10)
            bus.publish("doorbell.pressed", camera="before")
            await asyncio.wait_for(got_first.wait(), 10)

            await api.remove_owner(phone.key_id)
            bus.publish("doorbell.pressed", camera="after")
            with pytest.raises(ApiError) as caught:
                await asyncio.wait_for(listening, 10)
            assert (caught.value.status, caught.value.code) == (403, "unknown_key")
            assert "removed" in caught.value.detail
            assert [e.data["camera"] for e in received] == ["before"]
            assert bus.subscriber_count == 0

            # The admin's own stream is untouched by another owner's removal.
            stream = api.events(("doorbell.pressed",))
            waiter = asyncio.ensure_future(anext(stream))
            await asyncio.wait_for(bus.wait_for_subscriber(), 10)
            bus.publish("doorbell.pressed", camera="still")
            assert (await asyncio.wait_for(waiter, 10)).data == {"camera": "still"}
            await stream.aclose()


async def test_removed_owner_socket_gets_its_own_close_code(tmp_path: Path) -> None:
    """The close frame says why, for clients other than ours (raw WebSocket)."""
    admin, phone = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with running_device(tmp_path / "data") as running:
        running.add_owner(admin, "admin")
        running.add_owner(phone, "second phone")
        bus = running.app[appkeys.BUS]
        url = running.url + "/events"
        headers = sign_http_request(
            "GET",
            url,
            b"",
            key=phone.signing_key,
            key_id=phone.key_id,
            tag=running.device.identity.device_id,
            created_s=int(time.time()),
            nonce=secrets.token_urlsafe(18),
        )
        ssl = client_context(running.device.fingerprint)
        async with (
            aiohttp.ClientSession() as http,
            running.client(admin) as api,
            http.ws_connect(url, headers=headers, ssl=ssl) as socket,
        ):
            await asyncio.wait_for(bus.wait_for_subscriber(), 10)
            await api.remove_owner(phone.key_id)
            bus.publish("doorbell.pressed", camera="after")
            message = await asyncio.wait_for(socket.receive(), 10)
            assert message.type is aiohttp.WSMsgType.CLOSE
            assert socket.close_code == CLOSE_OWNER_REMOVED
            assert message.extra == "this key is no longer an owner of the device"
