"""Every owner route refuses unsigned, badly signed, replayed, stale and unpaired-key requests, and
a removed owner at once; errors are JSON with stable codes. Real TLS on 127.0.0.1."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from crypto.keys import KeyBundle
from crypto.tls import client_context
from hub.server.config import ServeConfig
from hub.wire.httpsig import sign_http_request
from tests.hub.hubkit import Running, running_device

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

# (method, path) of every owner route, with ids that need not exist: auth is checked first.
OWNER_ROUTES = [
    ("GET", "/cameras"),
    ("GET", "/clips?camera=front&limit=5"),
    ("GET", "/clips/c1"),
    ("DELETE", "/clips/c1"),
    ("GET", "/clips/c1/manifest"),
    ("GET", "/segments/s1"),
    ("GET", "/segments/s1/header"),
    ("GET", "/policy"),
    ("PUT", "/policy"),
    ("GET", "/requests"),
    ("GET", "/requests/r1"),
    ("POST", "/requests/r1/consent"),
    ("POST", "/requests/r1/decline"),
    ("POST", "/releases/x1/revoke"),
    ("GET", "/owners"),
    ("DELETE", "/owners/k1"),
    ("POST", "/owners/approve"),
    ("GET", "/audit/entries?start=0"),
    ("GET", "/audit/checkpoint"),
    ("GET", "/audit/proof/inclusion?index=0&size=1"),
    ("GET", "/audit/proof/consistency?old=0&new=0"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/events"),
]
BODY = b'{"token": "x"}'


@pytest_asyncio.fixture
async def device(tmp_path: Path) -> AsyncIterator[tuple[Running, KeyBundle]]:
    owner = KeyBundle.generate("x25519")
    # Each test sends one failed signature per route from one address: no 429 for that here
    # (test_app_limits covers it).
    config = ServeConfig(data_dir=tmp_path / "data", auth_failure_burst=1000)
    async with running_device(tmp_path / "data", config=config) as running:
        running.add_owner(owner)
        yield running, owner


@pytest_asyncio.fixture
async def http(device: tuple[Running, KeyBundle]) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


def _signed(
    running: Running,
    keys: KeyBundle,
    method: str,
    url: str,
    body: bytes,
    *,
    created_s: int | None = None,
) -> dict[str, str]:
    return sign_http_request(
        method,
        url,
        body,
        key=keys.signing_key,
        key_id=keys.key_id,
        tag=running.device.identity.device_id,
        created_s=int(time.time()) if created_s is None else created_s,
        nonce=secrets.token_urlsafe(18),
    )


async def _call(
    http: aiohttp.ClientSession,
    running: Running,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes = b"",
) -> tuple[int, dict[str, object]]:
    ssl = client_context(running.device.fingerprint)
    async with http.request(
        method, running.url + path, data=body, headers=headers, ssl=ssl
    ) as response:
        assert response.content_type == "application/json"
        return response.status, (await response.json())["error"]


def _body(method: str) -> bytes:
    return BODY if method in ("POST", "PUT") else b""


# How each hostile request is signed: (http, running, owner, stranger, method, path, body) -> headers.
async def _unsigned(http, running, owner, stranger, method, path, body) -> dict[str, str]:
    return {}


async def _badly_signed(http, running, owner, stranger, method, path, body) -> dict[str, str]:
    headers = _signed(running, owner, method, running.url + path, body)
    # Flip one byte of the signature itself.
    label, _, value = headers["Signature"].partition("=:")
    raw = bytearray(base64.b64decode(value.rstrip(":")))
    raw[0] ^= 1
    headers["Signature"] = f"{label}=:{base64.b64encode(bytes(raw)).decode()}:"
    return headers


async def _replayed(http, running, owner, stranger, method, path, body) -> dict[str, str]:
    headers = _signed(running, owner, method, running.url + path, body)
    first, _ = await _first_status(http, running, method, path, headers, body)
    assert first not in (401, 403), (method, path)
    return headers


async def _stale(http, running, owner, stranger, method, path, body) -> dict[str, str]:
    old = int(time.time()) - 3600
    return _signed(running, owner, method, running.url + path, body, created_s=old)


async def _unpaired(http, running, owner, stranger, method, path, body) -> dict[str, str]:
    return _signed(running, stranger, method, running.url + path, body)


@pytest.mark.parametrize(
    ("sign", "status", "code", "message", "whole"),
    [
        pytest.param(
            _unsigned,
            401,
            "unsigned",
            "the request is not signed; sign it with your paired key",
            True,
            id="unsigned",
        ),
        pytest.param(
            _badly_signed,
            401,
            "bad_signature",
            "the request signature does not verify",
            True,
            id="badly_signed",
        ),
        pytest.param(
            _replayed,
            401,
            "replayed",
            "this signed request was already received; sign it again",
            True,
            id="replayed",
        ),
        pytest.param(
            _stale, 401, "stale", "outside ±60 s; check the signer's clock", False, id="stale"
        ),
        pytest.param(
            _unpaired,
            403,
            "unknown_key",
            "key {stranger} is not known to this device; pair first",
            True,
            id="unpaired_key",
        ),
    ],
)
async def test_every_owner_route_refuses(
    device, http, sign, status: int, code: str, message: str, whole: bool
) -> None:
    """``whole``: the error message is exactly ``message``; else it contains it."""
    running, owner = device
    stranger = KeyBundle.generate("x25519")
    expected = message.format(stranger=stranger.key_id)
    for method, path in OWNER_ROUTES:
        body = _body(method)
        headers = await sign(http, running, owner, stranger, method, path, body)
        got, error = await _call(http, running, method, path, headers, body)
        assert (got, error["code"]) == (status, code), (method, path)
        if whole:
            assert error["message"] == expected
        else:
            assert expected in str(error["message"])


async def test_signature_for_another_path_is_refused(device, http) -> None:
    running, owner = device
    headers = _signed(running, owner, "GET", running.url + "/owners", b"")
    status, error = await _call(http, running, "GET", "/audit/checkpoint", headers)
    assert (status, error["code"]) == (401, "bad_signature")


async def test_tampered_body_is_refused(device, http) -> None:
    running, owner = device
    headers = _signed(running, owner, "PUT", running.url + "/policy", BODY)
    status, error = await _call(http, running, "PUT", "/policy", headers, b'{"token": "y"}')
    assert (status, error["code"]) == (400, "digest_mismatch")
    assert error["message"] == "the Content-Digest does not match the request body"


async def test_removed_owner_is_refused_at_once(device) -> None:
    running, admin = device
    second = KeyBundle.generate("x25519")
    running.add_owner(second, "second phone")
    async with running.client(admin) as api, running.client(second) as phone:
        assert [o.name for o in await phone.owners()] == ["phone", "second phone"]
        removed = await api.remove_owner(second.key_id)
        assert removed.removed_s is not None
        with pytest.raises(Exception, match=r"unknown_key, HTTP 403") as caught:
            await phone.health()
        assert caught.value.code == "unknown_key"  # type: ignore[attr-defined]
        # Its recipient is no longer among those new segments are encrypted to.
        assert [str(r) for r in running.device.owners.recipients()] == [str(admin.recipient)]
        assert (await api.health())["owners"] == 1


async def test_a_non_admin_cannot_remove_another_owner(device) -> None:
    running, admin = device
    second = KeyBundle.generate("x25519")
    running.add_owner(second, "second phone")
    async with running.client(second) as phone:
        with pytest.raises(Exception, match="only an admin can remove another owner") as caught:
            await phone.remove_owner(admin.key_id)
        assert (caught.value.status, caught.value.code) == (403, "forbidden")  # type: ignore[attr-defined]


async def _first_status(http, running, method, path, headers, body) -> tuple[int, bytes]:
    ssl = client_context(running.device.fingerprint)
    async with http.request(
        method, running.url + path, data=body, headers=headers, ssl=ssl
    ) as response:
        return response.status, await response.read()
