"""Stream a stored file as a response body: few, large reads off the event loop.

aiohttp's ``FileResponse`` over TLS falls back to asyncio's ``sendfile`` emulation, which hops to
a worker thread for every 16 KiB; with the cameras' threads competing for the GIL each hop can
wait a whole switch interval. Here each read is a quarter MiB (a 2 s 720p segment takes two),
the writes go through aiohttp's flow control, and the caller learns how much of the file the
client was actually sent.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from aiohttp import web

__all__ = ["CHUNK_BYTES", "SentFile", "send_file"]

CHUNK_BYTES = 256 * 1024
# A client that reads nothing for this long is dropped.
SEND_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class SentFile:
    """The outcome of :func:`send_file`: bytes of the body handed to the connection, of ``size``;
    ``ended_by`` says what cut the stream short: ``"disconnected"`` or ``"timeout"``."""

    response: web.StreamResponse
    size: int
    sent: int
    ended_by: str | None = None

    @property
    def complete(self) -> bool:
        return self.ended_by is None and self.sent == self.size


async def send_file(
    request: web.Request,
    path: Path,
    headers: Mapping[str, str],
    *,
    timeout_s: float = SEND_TIMEOUT_S,
) -> SentFile:
    """Send ``path`` with ``headers`` and its Content-Length. A client that hangs up, or reads
    nothing for ``timeout_s``, ends the stream (and its connection): the result says so."""
    f, size, chunk = await asyncio.to_thread(_open, path)
    response = web.StreamResponse(headers={**headers, "Content-Length": str(size)})
    sent = 0
    try:
        await response.prepare(request)
        while chunk:
            await asyncio.wait_for(response.write(chunk), timeout_s)
            sent += len(chunk)
            if sent >= size:
                break
            chunk = await asyncio.to_thread(f.read, min(CHUNK_BYTES, size - sent))
        await asyncio.wait_for(response.write_eof(), timeout_s)
    except (ConnectionError, TimeoutError) as exc:
        if request.transport is not None:
            request.transport.close()
        return SentFile(
            response, size, sent, "timeout" if isinstance(exc, TimeoutError) else "disconnected"
        )
    finally:
        f.close()
    return SentFile(response, size, sent)


def _open(path: Path) -> tuple[IO[bytes], int, bytes]:
    """The open file, its size and its first chunk (one trip to the worker thread)."""
    f = open(path, "rb")  # noqa: SIM115 - send_file closes it
    try:
        size = os.fstat(f.fileno()).st_size
        return f, size, f.read(min(CHUNK_BYTES, size))
    except BaseException:
        f.close()
        raise
