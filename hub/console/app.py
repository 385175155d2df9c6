"""The owner's console: a local web app on 127.0.0.1, next to the owner's keys.

``create_app`` builds it; ``serve`` binds it to loopback and runs it until cancelled. The page is
plain HTML, CSS and JavaScript modules from ``static/`` (shipped with the package, no build step,
nothing loaded from elsewhere); the page talks only to ``/api/`` (``hub.console._api``), which
calls the same client code as ``doorward owner …``. ``hub.console._guard`` keeps every other
web page and host name out.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from hub.cli.common import CliError
from hub.client.profile import Profile
from hub.console._alerts import add_alert_routes
from hub.console._api import AUDIT_PAGE, STATE, ConsoleState, add_routes, error_middleware
from hub.console._guard import Gate, PathOnlyAccessLogger, add_headers, gate_middleware
from hub.console._household import add_household_routes
from hub.console._player import add_player_routes

__all__ = ["STATIC_DIR", "create_app", "new_gate", "serve"]

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
_SECRET_BYTES = 32


def new_gate(token: Callable[[int], str] = secrets.token_urlsafe) -> Gate:
    """A gate with a fresh launch secret and session cookie value."""
    return Gate(secret=token(_SECRET_BYTES), session=token(_SECRET_BYTES))


def create_app(state: ConsoleState, gate: Gate) -> web.Application:
    """The console app for ``state``'s profile, guarded by ``gate``."""
    middlewares: list[Any] = [gate_middleware(gate), error_middleware]
    app = web.Application(middlewares=middlewares)
    app[STATE] = state
    app.on_response_prepare.append(add_headers)
    app.router.add_get("/", _index)
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    add_routes(app)
    add_player_routes(app)
    add_alert_routes(app)
    add_household_routes(app)
    return app


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def serve(
    profile: Profile,
    *,
    port: int = 0,
    via: str = "auto",
    ready: Callable[[str], None],
    gate: Gate | None = None,
    interfaces: tuple[str, ...] | None = None,
    audit_page: int = AUDIT_PAGE,
) -> None:
    """Run the console on 127.0.0.1:``port`` (0: any free port) until cancelled; ``ready`` gets
    the URL to open (it holds the launch secret: show it to the owner, never log it).
    ``interfaces``: the addresses zeroconf looks for doorbells on (None: every interface);
    ``audit_page``: audit entries per page."""
    gate = gate or new_gate()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise CliError(
            f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); pick another --port, or 0 "
            "for any free one"
        ) from None
    gate.port = sock.getsockname()[1]
    app = create_app(
        ConsoleState(profile, via=via, interfaces=interfaces, audit_page=audit_page), gate
    )
    runner = web.AppRunner(app, handle_signals=False, access_log_class=PathOnlyAccessLogger)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        logger.info("console.started port=%d profile=%s", gate.port, profile.directory)
        ready(gate.url())
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
