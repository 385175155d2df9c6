"""A console on loopback for the tests: a real server (``hub.console.serve``) over a fresh owner
profile, and an HTTP client that keeps every answer for the secret checks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest_asyncio

from crypto.keys import KeyBundle
from hub.client.profile import Profile
from hub.console import Gate, serve

__all__ = ["SECRET", "SESSION", "Console", "console", "cookie"]

SECRET = "launch-secret-" + "s" * 30
SESSION = "session-cookie-" + "c" * 30


@dataclass
class Console:
    url: str
    gate: Gate
    http: aiohttp.ClientSession
    seen: list[str]  # every response's status line, headers and body, for the secret check
    profile: Profile

    @property
    def base(self) -> str:
        return self.gate.origin

    async def post(self, path: str, body: object) -> tuple[int, dict[str, str], str]:
        """A change from the console's own page (its Origin, the cookie)."""
        return await self.send("POST", path, cookie() | {"Origin": self.base}, json=body)

    async def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], str]:
        return await self.send("GET", path, headers)

    async def send(
        self, method: str, path: str, headers: dict[str, str], json: object = None
    ) -> tuple[int, dict[str, str], str]:
        async with self.http.request(
            method, self.base + path, headers=headers, json=json, allow_redirects=False
        ) as response:
            body = await response.text()
            found = {k.lower(): v for k, v in response.headers.items()}
            self.seen.append(f"{response.status} {found} {body}")
            return response.status, found, body


@pytest_asyncio.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    """A console over a fresh profile (owner "Ada", no doorbell paired)."""
    profile = Profile(tmp_path / "owner", "owner")
    profile.create(KeyBundle.generate("x25519"), {"name": "Ada", "recipient_kind": "x25519"})
    gate = Gate(secret=SECRET, session=SESSION)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(profile, ready=ready.set_result, gate=gate))
    url = await asyncio.wait_for(ready, 20)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            yield Console(url, gate, http, [], profile)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def cookie() -> dict[str, str]:
    """The session cookie header, as the owner's browser sends it."""
    return {"Cookie": f"doorward_console={SESSION}"}
