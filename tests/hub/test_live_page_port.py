"""The live page's port (an ECDSA certificate browsers accept, pinned by nobody) serves the page
and its two calls only, over TLS 1.3 only; the page's event streams are capped per live session,
apart from the owners' event streams."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from crypto.keys import KeyBundle
from hub.client import DoorwardClient
from hub.client.live import receive_live
from hub.server import appkeys
from hub.wire.httpsig import sign_http_request
from tests.hub.test_live_kit import live_device, serving

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]

SCENARIO = "[camera]\nwidth = 160\nheight = 120\nfps = 10\nseconds = 600\nseed = 3\n"
# Every API route other than the page's: none of them may answer on the page port.
API_ROUTES = [
    ("GET", "/health"),
    ("GET", "/cameras"),
    ("GET", "/clips"),
    ("GET", "/owners"),
    ("DELETE", "/owners/k1"),
    ("GET", "/audit/checkpoint"),
    ("GET", "/policy"),
    ("GET", "/events"),
    ("POST", "/requests"),
    ("GET", "/releases/r1"),
    ("POST", "/pair/start"),
    ("POST", "/pair/finish"),
    ("POST", "/owners/approve"),
    ("POST", "/live/offer"),
    ("POST", "/live/link"),
]


def _browser_tls(*, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """What a browser that clicked through the self-signed warning does: no verification."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if maximum is not None:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = maximum
    return context


@contextlib.asynccontextmanager
async def _serving(tmp_path: Path) -> AsyncIterator[tuple[DoorwardClient, KeyBundle, str]]:
    """``doorward serve`` with a simulated camera and one paired owner: the owner's client, its
    keys and the live page's base URL (from a link it minted)."""
    scenario = tmp_path / "cam.toml"
    scenario.write_text(SCENARIO)
    async with (
        serving(tmp_path, f"front=simulated:{scenario}") as served,
        served.client() as api,
    ):
        link = await api.live_link("front")
        parts = urlsplit(link.url)
        yield api, served.owner, f"{parts.scheme}://{parts.netloc}"


@pytest.mark.slow
async def test_the_page_port_serves_the_page_and_nothing_else(tmp_path: Path) -> None:
    async with _serving(tmp_path) as (api, owner, page), aiohttp.ClientSession() as http:
        assert page != str(api._base)
        browser = _browser_tls()
        for path in ("/live/page", "/live/page.js", "/live/page.css"):
            async with http.get(page + path, ssl=browser) as response:
                assert response.status == 200, path
        # The page's own call answers (here: a link that is not one).
        async with http.post(
            page + "/live/link-offer", json={"token": "x", "sdp": "v=0"}, ssl=browser
        ) as response:
            assert (response.status, (await response.json())["error"]["code"]) == (
                401,
                "token_invalid",
            )
        # Owner, requester and pairing routes do not exist there, even correctly signed.
        statuses = {}
        for method, path in API_ROUTES:
            body = b'{"token": "x"}' if method == "POST" else b""
            headers = sign_http_request(
                method,
                page + path,
                body,
                key=owner.signing_key,
                key_id=owner.key_id,
                tag=api._device_id,
                created_s=int(time.time()),
                nonce=secrets.token_urlsafe(18),
            )
            async with http.request(
                method, page + path, data=body, headers=headers, ssl=browser
            ) as response:
                statuses[(method, path)] = response.status
        assert statuses == dict.fromkeys(API_ROUTES, 404)
        # The owner's own port still answers them.
        assert (await api.health())["status"] == "ok"


async def _handshake(page: str, maximum: ssl.TLSVersion) -> str:
    """Connect to the page port offering TLS up to ``maximum``; the version agreed."""
    parts = urlsplit(page)
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname, parts.port, ssl=_browser_tls(maximum=maximum)),
        10,
    )
    try:
        return str(writer.get_extra_info("ssl_object").version())
    finally:
        writer.close()


@pytest.mark.slow
async def test_the_page_port_refuses_tls_1_2(tmp_path: Path) -> None:
    async with _serving(tmp_path) as (_api, _owner, page):
        with pytest.raises((ssl.SSLError, ConnectionResetError)):  # no handshake either way
            await _handshake(page, ssl.TLSVersion.TLSv1_2)
        # TLS 1.3 is what browsers use, and it works.
        assert await _handshake(page, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


@pytest.mark.slow
async def test_link_event_streams_are_capped_per_session_not_by_the_owners_limit(
    tmp_path: Path,
) -> None:
    owner = KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data") as live:
        live.add_owner(owner)
        bus = live.app[appkeys.BUS]
        async with live.client(owner) as api, aiohttp.ClientSession() as http:
            link = await api.live_link("front")
            token = parse_qs(urlsplit(link.url).query)["t"][0]
            answers: list[dict[str, object]] = []

            async def post_offer(sdp: str) -> str:
                async with http.post(
                    live.url + "/live/link-offer", json={"token": token, "sdp": sdp}, ssl=False
                ) as response:
                    answers.append(await response.json())
                    return str(answers[-1]["sdp"])

            stop, watching = asyncio.Event(), asyncio.Event()
            viewer = asyncio.ensure_future(
                receive_live(post_offer, on_frame=lambda _: watching.set(), stop=stop)
            )
            try:
                await asyncio.wait_for(watching.wait(), 30)
                feed = answers[0]["feed"]
                owners_before = bus.subscriber_count
                streams = []
                for _ in range(4):
                    response = await http.get(
                        live.url + "/live/link-events", params={"feed": feed}, ssl=False
                    )
                    assert response.status == 200
                    assert await response.content.readline() == b": live view events\n"
                    streams.append(response)
                # The fifth page stream of this session is refused...
                async with http.get(
                    live.url + "/live/link-events", params={"feed": feed}, ssl=False
                ) as fifth:
                    assert fifth.status == 409
                    error = (await fifth.json())["error"]
                assert error["code"] == "busy"
                assert error["message"] == (
                    "this live session already has 4 event streams open; close one and retry"
                )
                # ...and the page streams took none of the owners' event stream slots.
                assert bus.subscriber_count == owners_before
                events = api.events(("doorbell.pressed",))
                waiter = asyncio.ensure_future(anext(events))
                await asyncio.wait_for(bus.wait_for_subscriber(owners_before + 1), 10)
                bus.publish("doorbell.pressed", camera="front")
                assert (await asyncio.wait_for(waiter, 10)).kind == "doorbell.pressed"
                await events.aclose()
                # The page streams carry the press too.
                for response in streams:
                    kinds = set()
                    while b"event: doorbell.pressed\n" not in kinds:
                        kinds.add(await asyncio.wait_for(response.content.readline(), 10))
                    response.close()
            finally:
                stop.set()
                await asyncio.wait_for(viewer, 30)
