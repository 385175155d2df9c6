"""A stranger cannot make the API read a body: the signature and key id are checked from the
request head, bodies are capped per route from their Content-Length, and an address that keeps
failing authentication is answered 429. Real TLS on 127.0.0.1, requests written by hand so the
body can be withheld."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from crypto.keys import KeyBundle
from crypto.tls import client_context
from hub.wire.httpsig import sign_http_request
from tests.hub.attackkit import closed_by_server, open_tls
from tests.hub.hubkit import Running, running_device

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]

Device = tuple[Running, KeyBundle]
EIGHT_MIB = 8 * 1024 * 1024
# Far longer than answering takes; a server that waits for the withheld body never answers.
_ANSWER_WITHIN_S = 20.0


@pytest_asyncio.fixture
async def device(tmp_path: Path) -> AsyncIterator[Device]:
    owner = KeyBundle.generate("x25519")
    async with running_device(tmp_path / "data") as running:
        running.add_owner(owner)
        yield running, owner


def _head(method: str, path: str, length: int, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _answer_without_the_body(
    running: Running, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object], bool]:
    """Send only the head of an 8 MiB request (and its first KiB); the status, the JSON error and
    whether the server then closed the connection."""
    port = int(running.url.rsplit(":", 1)[1])
    reader, writer = await open_tls(port, running.device.fingerprint)
    try:
        writer.write(_head(method, path, EIGHT_MIB, headers) + b"x" * 1024)
        async with asyncio.timeout(_ANSWER_WITHIN_S):
            head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        fields = dict(
            line.decode().lower().split(": ", 1) for line in head.split(b"\r\n")[1:] if line
        )
        body = await reader.readexactly(int(fields["content-length"]))
        closed = await closed_by_server(reader, within_s=_ANSWER_WITHIN_S)
        return status, json.loads(body)["error"], closed
    finally:
        writer.transport.abort()


def _sign(running: Running, keys: KeyBundle, method: str, path: str, body: bytes) -> dict[str, str]:
    return sign_http_request(
        method,
        running.url + path,
        body,
        key=keys.signing_key,
        key_id=keys.key_id,
        tag=running.device.identity.device_id,
        created_s=int(time.time()),
        nonce=secrets.token_urlsafe(18),
    )


async def test_an_unsigned_8_mib_body_is_refused_before_it_is_read(device: Device) -> None:
    running, _ = device
    path = "/requests/r1/consent"  # the one route that takes megabytes
    status, error, closed = await _answer_without_the_body(running, "POST", path)
    assert (status, error["code"]) == (401, "unsigned")
    assert closed  # the rest of the body is never read


async def test_an_unknown_key_is_refused_before_the_body_is_read(device: Device) -> None:
    running, _ = device
    stranger = KeyBundle.generate("x25519")
    path = "/requests/r1/consent"
    headers = _sign(running, stranger, "POST", path, b"\0" * EIGHT_MIB)
    status, error, closed = await _answer_without_the_body(running, "POST", path, headers)
    assert (status, error["code"]) == (403, "unknown_key")
    assert error["message"] == f"key {stranger.key_id} is not known to this device; pair first"
    assert closed


async def test_a_forged_owner_signature_is_refused_before_the_body_is_read(device: Device) -> None:
    running, owner = device
    path = "/requests/r1/consent"
    headers = _sign(running, owner, "POST", path, b"\0" * EIGHT_MIB)
    value = headers["Signature"]  # doorward=:<base64>:
    headers["Signature"] = value[:12] + ("A" if value[12] != "A" else "B") + value[13:]
    status, error, closed = await _answer_without_the_body(running, "POST", path, headers)
    assert (status, error["code"]) == (401, "bad_signature")
    assert closed


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/health"),  # owner route without a body
        ("PUT", "/policy"),  # owner route with a small body
        ("POST", "/requests"),  # requester route: the body is a request token of a few KiB
        ("POST", "/pair/start"),  # unauthenticated
    ],
)
async def test_a_body_past_the_route_limit_is_refused_from_its_length(
    device: Device, method: str, path: str
) -> None:
    running, owner = device
    headers = _sign(running, owner, method, path, b"\0" * EIGHT_MIB)
    status, error, closed = await _answer_without_the_body(running, method, path, headers)
    assert (status, error["code"]) == (413, "too_large")
    assert str(error["message"]).startswith(f"the body of {method} ")
    assert closed


async def test_repeated_failed_authentication_is_answered_429(device: Device) -> None:
    running, owner = device
    ssl = client_context(running.device.fingerprint)
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(40):
            async with http.get(running.url + "/health", ssl=ssl) as response:
                statuses.append(response.status)
                retry_after = response.headers.get("Retry-After")
    assert statuses[0] == 401
    assert statuses[-1] == 429
    assert retry_after is not None
    assert int(retry_after) >= 1
    # The owner's own signed requests still go through from that address.
    async with running.client(owner) as phone:
        assert (await phone.health())["status"] == "ok"


async def test_failed_requester_authentication_counts_too(device: Device) -> None:
    running, _ = device
    ssl = client_context(running.device.fingerprint)
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(15):  # fewer than the requests the address may send (rate_burst)
            async with http.post(running.url + "/requests", data=b"x", ssl=ssl) as response:
                statuses.append(response.status)
    assert statuses[0] == 401
    assert statuses[-1] == 429
