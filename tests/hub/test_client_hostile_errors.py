"""A device (the pinned TLS key, so a compromised one) that answers errors with hostile bodies:
the client reports an ApiError with the HTTP status, never a crash of the parser."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from crypto.keys import KeyBundle
from hub.client import ApiError, DoorwardClient
from hub.server.state import Device
from tests.hub.hostile_device import serving

NESTED = b"[" * 200_000  # deeper than json's recursion limit
BODIES = {
    "nested": NESTED,
    "nested-error": b'{"error": ' + NESTED + b"}",
    "nested-code": b'{"error": {"code": ' + NESTED + b"}}",
    "bytes": b"\xff\xfe not json",
    "str": b'{"error": "not an object"}',
}


def _app(body: bytes) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=503, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


@pytest.mark.parametrize("name", sorted(BODIES))
def test_a_hostile_error_body_is_an_api_error(tmp_path: Path, name: str) -> None:
    device = Device.open(tmp_path / "device")
    owner = KeyBundle.generate("x25519")

    async def ask(url: str) -> None:
        client = DoorwardClient(
            url,
            fingerprint=device.fingerprint,
            device_id=device.identity.device_id,
            key=owner.signing_key,
        )
        async with client:
            await client.health()

    try:
        with (
            serving(_app(BODIES[name]), device.ssl_context()) as url,
            pytest.raises(ApiError) as caught,
        ):
            asyncio.run(ask(url))
    finally:
        device.close()
    assert (caught.value.status, caught.value.code) == (503, "http_error")
