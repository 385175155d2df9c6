"""Headless Chromium driven over the DevTools protocol, for the browser tests: a minimal client
(:class:`DevTools`) and a launcher (:func:`chromium`)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from tests.kit import require_tool

__all__ = ["DevTools", "chromium"]

_TIMEOUT_S = 45.0


class DevTools:
    """A minimal Chrome DevTools Protocol client over one browser WebSocket (flat sessions)."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self._socket.send_json(message)
        while True:
            reply = await asyncio.wait_for(self._socket.receive_json(), _TIMEOUT_S)
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise AssertionError(f"{method} failed: {reply['error']}")
                return reply["result"]
            if "method" in reply:
                self._events.append(reply)

    async def wait_event(self, method: str, session: str) -> dict[str, Any]:
        while True:
            for event in self._events:
                if event["method"] == method and event.get("sessionId") == session:
                    self._events.remove(event)
                    return event
            message = await asyncio.wait_for(self._socket.receive_json(), _TIMEOUT_S)
            if "method" in message:
                self._events.append(message)

    async def open_page(self, url: str, *, new_window: bool = False) -> str:
        """Open ``url`` in a new tab (or window, so that it stays visible beside the others) and
        return its session once the page has loaded."""
        target = await self.call("Target.createTarget", url="about:blank", newWindow=new_window)
        attached = await self.call(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        session = str(attached["sessionId"])
        await self.call("Page.enable", session)
        nav = await self.call("Page.navigate", session, url=url)
        assert "errorText" not in nav, nav
        await self.wait_event("Page.loadEventFired", session)
        return session

    async def evaluate(self, session: str, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate",
            session,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, session: str) -> bytes:
        """The page as a PNG (the whole page, not just the viewport)."""
        shot = await self.call(
            "Page.captureScreenshot", session, format="png", captureBeyondViewport=True
        )
        return base64.b64decode(shot["data"])

    async def accessibility_tree(self, session: str) -> list[dict[str, Any]]:
        """The page's full accessibility tree (``Accessibility.getFullAXTree`` nodes)."""
        await self.call("Accessibility.enable", session)
        nodes: list[dict[str, Any]] = (await self.call("Accessibility.getFullAXTree", session))[
            "nodes"
        ]
        return nodes


@contextlib.asynccontextmanager
async def chromium(
    tmp_path: Path, spki_pin: str | None = None, extra_args: Sequence[str] = ()
) -> AsyncIterator[DevTools]:
    """Headless Chromium with its DevTools socket; ``spki_pin`` (SHA-256 of a TLS key's SPKI,
    base64): the one self-signed key it accepts; ``extra_args`` are further switches."""
    binary = require_tool("chromium")
    process = await asyncio.create_subprocess_exec(
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={tmp_path / 'chromium'}",
        # Trust exactly the device's key, as a paired phone does (SHA-256 of the SPKI, base64).
        *([f"--ignore-certificate-errors-spki-list={spki_pin}"] if spki_pin else []),
        "--remote-debugging-port=0",
        *extra_args,
        "about:blank",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        endpoint = None
        while endpoint is None:
            line = await asyncio.wait_for(process.stderr.readline(), _TIMEOUT_S)
            assert line, "chromium exited before opening its DevTools port"
            found = re.search(rb"DevTools listening on (ws://\S+)", line)
            endpoint = found.group(1).decode() if found else None
        drain = asyncio.ensure_future(process.stderr.read())
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(endpoint, max_msg_size=64 * 1024 * 1024) as socket,
        ):
            yield DevTools(socket)
        drain.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 10)
        if process.returncode is None:
            process.kill()
            await process.wait()
