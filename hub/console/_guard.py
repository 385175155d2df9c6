"""The console's gate: only the owner's own browser, on the console's own address, gets in.

A page on any web site can make the owner's browser send requests to 127.0.0.1, and a DNS name
it controls can be pointed at 127.0.0.1 (DNS rebinding). So every request must name the console
itself in ``Host``; every request that changes something must come from the console's own
``Origin``; and every request must carry the session cookie, which only the browser that opened
the printed URL (holding the per-launch secret) was given. No CORS header is ever sent, so no
other origin can read an answer either. Every answer carries a strict Content-Security-Policy
(scripts and styles from the console only, no inline ones) and may not be framed.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

__all__ = ["COOKIE", "SECRET_PARAM", "Gate", "PathOnlyAccessLogger", "gate_middleware"]

logger = logging.getLogger(__name__)

COOKIE = "doorward_console"
SECRET_PARAM = "key"  # noqa: S105 (the query parameter's name, not a secret)
_SAFE_METHODS = frozenset({"GET", "HEAD"})
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class Gate:
    """The console's address and this launch's two secrets: ``secret`` (in the printed URL) and
    ``session`` (the cookie it is exchanged for)."""

    secret: str = field(repr=False)
    session: str = field(repr=False)
    port: int = 0  # set once the socket is bound

    @property
    def host(self) -> str:
        """The one ``Host`` the console answers to."""
        return f"127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        """The console's own origin."""
        return f"http://{self.host}"

    def url(self) -> str:
        """The URL that opens the console (it holds the secret: print it, never log it)."""
        return f"{self.origin}/?{SECRET_PARAM}={self.secret}"


def gate_middleware(gate: Gate) -> Middleware:
    """The middleware enforcing :class:`Gate` on every request (see the module doc)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.host != gate.host:
            return _refuse(
                421, "wrong_host", f"this console answers only at {gate.origin}; open that address"
            )
        if request.method not in _SAFE_METHODS and request.headers.get("Origin") != gate.origin:
            return _refuse(
                403,
                "wrong_origin",
                "a change must come from the console's own page; reload it from the printed URL",
            )
        offered = request.query.get(SECRET_PARAM)
        if offered is not None and request.path == "/" and request.method == "GET":
            if not hmac.compare_digest(offered.encode(), gate.secret.encode()):
                return _refuse(
                    403,
                    "wrong_secret",
                    "this console link is not the one printed at launch; copy it again",
                )
            # The secret leaves the address bar at once: the cookie stands for it from now on.
            response = web.Response(status=303, headers={"Location": "/"})
            response.set_cookie(
                COOKIE, gate.session, httponly=True, samesite="Strict", path="/", secure=False
            )
            return response
        cookie = request.cookies.get(COOKIE, "")
        if not hmac.compare_digest(cookie.encode(), gate.session.encode()):
            return _refuse(
                401,
                "no_session",
                "open the console with the URL 'doorward owner console' printed "
                "(it holds this launch's secret)",
            )
        return await handler(request)

    return guard


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the security headers on every answer; no caching of the API."""
    for name, value in _HEADERS.items():
        response.headers[name] = value
    if request.path.startswith("/api/") or response.status >= 300:
        response.headers["Cache-Control"] = "no-store"
    else:
        response.headers.setdefault("Cache-Control", "no-cache")


def _refuse(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class PathOnlyAccessLogger(AbstractAccessLogger):
    """An access log line without the query string (it may hold the launch secret) or cookies."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "console.request method=%s path=%s status=%d ms=%.0f",
            request.method,
            request.path,
            response.status,
            time * 1000,
        )
