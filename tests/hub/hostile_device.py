"""A hostile device for requester tests: a real TLS 1.3 site on 127.0.0.1 whose key and answers the
test chooses, and genuine release bundles signed by any device key."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

from consent.models import PairedOwner
from crypto.keys import DeviceIdentity, KeyBundle
from tests.consent.kit import Owners, build_world
from tests.consent.test_flow import run_flow


def genuine_bundle(
    root: Path, device: DeviceIdentity, owner: KeyBundle, requester: KeyBundle
) -> bytes:
    """A release bundle (``rel-0001``) for ``requester``, made and signed by ``device`` itself."""
    owners = Owners([PairedOwner.from_public(owner.signing_key.public_key())])
    world = build_world(root, device, [owner], owners)
    return run_flow(world, owner, requester, device)[3]


@contextlib.contextmanager
def serving(app: web.Application, ssl_context: ssl.SSLContext) -> Iterator[str]:
    """Serve ``app`` over TLS on an ephemeral loopback port from a thread of its own (so code
    that runs its own event loop, such as the CLI, can talk to it); yields the base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    loop.run_until_complete(site.start())
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    thread = threading.Thread(target=loop.run_forever, name="hostile-device", daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def release_app(bundle: bytes) -> web.Application:
    """An API that answers every ``GET /releases/{id}`` with ``bundle`` (no signature checked)."""

    async def fetch(request: web.Request) -> web.Response:
        return web.Response(body=bundle, content_type="application/x-tar")

    app = web.Application()
    app.router.add_get("/releases/{release_id}", fetch)
    return app
