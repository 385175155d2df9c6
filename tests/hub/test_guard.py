"""Strangers on the LAN cannot blind the doorbell by holding connections: the connection guard of
``doorward serve`` closes connections that send no request head in time, refuses connections past
the per-address cap at accept, and makes room for an owner when the whole server is full."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.hub.attackkit import (
    Connection,
    attacker_address,
    close_all,
    closed_by_server,
    is_open,
    open_raw,
    open_tls,
    serve_config,
    serving,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

# Far beyond the header timeout (a few seconds by default): a connection still open after this
# is one the server keeps.
_CLOSED_WITHIN_S = 30.0


@pytest.mark.asyncio
async def test_idle_and_half_sent_connections_are_closed_after_the_header_timeout(
    tmp_path: Path,
) -> None:
    async with serving(serve_config(tmp_path)) as doorbell:
        source = attacker_address(0)
        raw = await open_raw(doorbell.port, source=source)  # TCP only: no TLS ClientHello
        idle = await open_tls(doorbell.port, doorbell.fingerprint, source=source)
        half = await open_tls(doorbell.port, doorbell.fingerprint, source=source)
        half[1].write(b"GET /health HTTP/1.1\r\nHost: doorbell\r\nX-Slow: ")  # never ends
        trickle = await open_tls(doorbell.port, doorbell.fingerprint, source=source)

        async def slowloris() -> None:  # one more header line every second
            trickle[1].write(b"GET /health HTTP/1.1\r\nHost: doorbell\r\n")
            for n in range(int(_CLOSED_WITHIN_S)):
                trickle[1].write(b"X-Slow-%d: a\r\n" % n)
                await asyncio.sleep(1.0)

        dribbling = asyncio.ensure_future(slowloris())
        try:
            closed = await asyncio.gather(
                *(
                    closed_by_server(reader, within_s=_CLOSED_WITHIN_S)
                    for reader, _ in (raw, idle, half, trickle)
                )
            )
        finally:
            dribbling.cancel()
            close_all([raw, idle, half, trickle])
        assert closed == [True, True, True, True]
        # The doorbell still answers its owner.
        async with doorbell.client() as phone:
            assert (await phone.health())["status"] == "ok"


async def _refused(port: int, source: str) -> bool:
    """Connect from ``source``: whether the server refuses the connection at once (reset during
    the connect, or closed before anything was sent)."""
    try:
        reader, writer = await open_raw(port, source=source)
    except ConnectionResetError:
        return True
    try:
        return await closed_by_server(reader, within_s=_CLOSED_WITHIN_S)
    finally:
        writer.transport.abort()


@pytest.mark.asyncio
async def test_connections_past_the_per_address_cap_are_refused_and_the_owner_gets_in(
    tmp_path: Path,
) -> None:
    config = serve_config(tmp_path)
    async with serving(config) as doorbell:
        source = attacker_address(0)
        held: list[Connection] = [
            await open_raw(doorbell.port, source=source)
            for _ in range(config.max_connections_per_address)
        ]
        try:
            # Past the cap, each new connection is refused while the first ones stay open.
            refused = [await _refused(doorbell.port, source) for _ in range(8)]
            assert refused == [True] * 8
            assert all(is_open(reader) for reader, _ in held)
            # An owner from another address is served meanwhile.
            async with doorbell.client() as phone:
                assert (await phone.health())["status"] == "ok"
        finally:
            close_all(held)


@pytest.mark.asyncio
async def test_a_full_server_evicts_a_stranger_to_let_an_owner_in(tmp_path: Path) -> None:
    config = serve_config(
        tmp_path, max_connections=16, max_connections_per_address=4, header_timeout_s=60.0
    )
    async with serving(config) as doorbell:
        async with doorbell.client() as phone:  # the owner has signed from 127.0.0.1 before
            assert (await phone.health())["status"] == "ok"
        # 16 strangers, 4 addresses: every slot of the server is taken, no address past its cap.
        held: list[Connection] = [
            await open_tls(doorbell.port, doorbell.fingerprint, source=attacker_address(i % 4))
            for i in range(16)
        ]
        try:
            # The owner finds room: the oldest stranger makes way.
            async with doorbell.client() as phone:
                assert (await phone.health())["status"] == "ok"
                assert await closed_by_server(held[0][0], within_s=_CLOSED_WITHIN_S)
                assert all(is_open(reader) for reader, _ in held[1:])
                assert (await phone.health())["status"] == "ok"
        finally:
            close_all(held)
