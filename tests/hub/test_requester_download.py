"""A hostile device cannot fill the requester's disk through a release download: the client stops at
its limit, whether the device announces the size or streams without one, and the CLI removes what
it had written."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from crypto.keys import KeyBundle
from hub.cli import cmd_requester
from hub.client import DoorwardClient, DownloadTooLarge
from hub.client.profile import PinnedDevice, Profile
from hub.server.state import Device
from tests.hub.hostile_device import serving

_MIB = 1024 * 1024
_CHUNK = bytes(64 * 1024)
_SENT_MAX = 64 * _MIB  # the endless stream is bounded all the same


def _flood_app() -> web.Application:
    """``/releases/chunked`` streams zeros with no length; ``/releases/announced`` says 1 GiB."""

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent = 0
        try:
            while sent < _SENT_MAX:
                await response.write(_CHUNK)
                sent += len(_CHUNK)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        return response

    async def announced(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 1024 * _MIB
        await response.prepare(request)
        with contextlib.suppress(ConnectionError, RuntimeError):  # the client hung up
            await response.write(_CHUNK)
        return response

    app = web.Application()
    app.router.add_get("/releases/chunked", chunked)
    app.router.add_get("/releases/announced", announced)
    return app


@pytest_asyncio.fixture
async def flooding(tmp_path: Path) -> AsyncIterator[tuple[str, Device]]:
    device = Device.open(tmp_path / "device")
    runner = web.AppRunner(_flood_app(), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=device.ssl_context())
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        yield f"https://127.0.0.1:{port}", device
    finally:
        await runner.cleanup()
        device.close()


def _client(url: str, device: Device) -> DoorwardClient:
    return DoorwardClient(
        url,
        fingerprint=device.fingerprint,
        device_id=device.identity.device_id,
        key=KeyBundle.generate("x25519").signing_key,
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("release", ["chunked", "announced"])
async def test_an_oversized_download_is_cut_off(
    flooding: tuple[str, Device], tmp_path: Path, release: str
) -> None:
    url, device = flooding
    async with _client(url, device) as api:
        buf = io.BytesIO()
        with pytest.raises(DownloadTooLarge) as info:
            await api.fetch_release(release, buf, max_bytes=_MIB)
        assert len(buf.getvalue()) <= _MIB
        assert (
            str(info.value)
            == f"the device sent more than {_MIB} bytes, the limit for this download"
        )

        target = tmp_path / "bundle.tar"
        with pytest.raises(DownloadTooLarge):
            await api.fetch_release(release, target, max_bytes=_MIB)
        assert sorted(os.listdir(tmp_path)) == ["device"]  # no partial file left


def test_fetch_cli_removes_an_oversized_download(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = Device.open(tmp_path / "device")
    requester = KeyBundle.generate("x25519")
    try:
        with serving(_flood_app(), device.ssl_context()) as url:
            profile = Profile(tmp_path / "profile", "requester")
            profile.create(requester, {"identity": {}, "recipient_kind": "x25519"})
            profile.pin(PinnedDevice(device.identity.device_id, device.fingerprint, url))
            code = cmd_requester.main(
                [
                    "fetch",
                    "chunked",
                    "--max-size",
                    "2MiB",
                    "--profile",
                    str(profile.directory),
                    "--out",
                    str(tmp_path / "out"),
                ]
            )
    finally:
        device.close()
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == (
        f"doorward: error: device {device.identity.device_id} sent more than {2 * _MIB} bytes "
        "for release chunked; the download was stopped and removed (a real release that large "
        "needs a higher --max-size)\n"
    )
    assert list((tmp_path / "out").iterdir()) == []
