"""send_file: whole files in quarter-MiB reads, and an honest count when the client goes away."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from hub.server.routes._files import CHUNK_BYTES, SentFile, send_file

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

# Far more than loopback's socket buffers hold, so a client that stops reading stalls the sender.
BIG_BYTES = 48 * 1024 * 1024


@contextlib.asynccontextmanager
async def serving(
    path: Path, *, timeout_s: float = 60.0
) -> AsyncIterator[tuple[str, asyncio.Future[SentFile]]]:
    """An HTTP server whose one route sends ``path``; the future gets send_file's result."""
    result: asyncio.Future[SentFile] = asyncio.get_running_loop().create_future()

    async def handler(request: web.Request) -> web.StreamResponse:
        sent = await send_file(
            request, path, {"Content-Type": "application/octet-stream"}, timeout_s=timeout_s
        )
        result.set_result(sent)
        return sent.response

    app = web.Application()
    app.router.add_get("/file", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        yield f"127.0.0.1:{port}", result
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES, 3 * CHUNK_BYTES + 123])
async def test_the_whole_file_arrives_with_its_length(tmp_path: Path, size: int) -> None:
    path = tmp_path / "segment.age"
    data = os.urandom(size)
    path.write_bytes(data)
    async with serving(path) as (address, result), aiohttp.ClientSession() as session:
        async with session.get(f"http://{address}/file") as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == str(size)
            assert response.headers["Content-Type"] == "application/octet-stream"
            body = await response.read()
        sent = await result
    assert body == data
    assert (sent.size, sent.sent, sent.ended_by, sent.complete) == (size, size, None, True)


async def _request_then(
    address: str, read_bytes: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /file HTTP/1.1\r\nHost: {address}\r\n\r\n".encode())
    await writer.drain()
    await reader.readexactly(read_bytes)
    return reader, writer


async def test_a_client_that_hangs_up_is_counted_as_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "big.age"
    path.write_bytes(os.urandom(BIG_BYTES))
    async with serving(path) as (address, result):
        _, writer = await _request_then(address, CHUNK_BYTES)
        writer.transport.abort()  # unread data in its buffer: the kernel resets the connection
        sent = await result
    assert sent.ended_by == "disconnected"
    assert not sent.complete
    assert CHUNK_BYTES <= sent.sent < BIG_BYTES
    assert sent.size == BIG_BYTES


async def test_a_client_that_stops_reading_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "big.age"
    path.write_bytes(os.urandom(BIG_BYTES))
    async with serving(path, timeout_s=0.2) as (address, result):
        reader, writer = await _request_then(address, 1)
        sent = await result
        rest = await reader.read()  # what was in flight, then the end of the dropped connection
        writer.close()
    assert sent.ended_by == "timeout"
    assert not sent.complete
    assert 0 < sent.sent < BIG_BYTES
    assert len(rest) < BIG_BYTES
