"""Inputs the fuzzers (tests/fuzz, fuzz/run.py) found crashing what the device parses before it
knows who is talking; each is now a 4xx answer instead of a 500 with a traceback in the log."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto.keys import key_id
from hub.server.errors import error_middleware
from hub.server.routes._params import parse_json_object
from hub.wire.errors import BadRequest
from hub.wire.httpsig import RequestVerifier, SignatureRejected, sign_http_request
from hub.wire.replay import ReplayCache
from tests.hub.hubkit import running_device

DEVICE_ID = "abcdefghijklmnop"
KEY = Ed25519PrivateKey.generate()
NOW = 1_790_000_000

# Bodies under any size limit that Python's JSON decoder cannot turn into a value.
DEEP = b"[" * 12_000  # far past the decoder's recursion limit, within a route's 16 KiB
HUGE_INT = b'{"token": ' + b"9" * 5000 + b"}"


@pytest.mark.parametrize("item", ["1", "1.5", "?1", ":AAAA:"], ids=repr)
def test_httpsig_rejects_a_covered_component_that_is_not_a_string(item: str) -> None:
    headers = sign_http_request(
        "POST",
        "https://doorbell.local/requests",
        b"",
        key=KEY,
        key_id=key_id(KEY.public_key()),
        tag=DEVICE_ID,
        created_s=NOW,
        nonce="n0nce-0123456789abcdef",
    )
    rest = headers["Signature-Input"].split(")", 1)[1]
    headers["Signature-Input"] = f'doorward=("@method" {item} "content-digest"){rest}'
    verifier = RequestVerifier(
        device_id=DEVICE_ID,
        lookup_key=lambda _: KEY.public_key(),
        replay=ReplayCache(window_s=60),
    )
    with pytest.raises(SignatureRejected) as refused:
        verifier.verify("POST", "https://doorbell.local/requests", headers, b"", now_s=NOW)
    assert refused.value.code == "bad_signature"


@pytest.mark.parametrize("body", [DEEP, HUGE_INT], ids=["deeply-nested", "huge-integer"])
def test_json_body_rejects_what_the_decoder_cannot_build(body: bytes) -> None:
    with pytest.raises(BadRequest, match="request body must be a JSON object"):
        parse_json_object(body)


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [DEEP, HUGE_INT], ids=["deeply-nested", "huge-integer"])
async def test_json_body_is_a_bad_request_not_a_server_error(body: bytes) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(parse_json_object(await request.read()))

    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/", handler)
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/", data=body)
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "bad_request"


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_pair_start_refuses_deeply_nested_json_from_a_stranger(tmp_path: Path) -> None:
    async with (
        running_device(tmp_path / "data") as running,
        aiohttp.ClientSession() as session,
        session.post(running.url + "/pair/start", data=DEEP, ssl=False) as response,
    ):
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "pairing_failed"
