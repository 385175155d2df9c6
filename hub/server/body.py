"""Request bodies: a byte limit per route, checked from ``Content-Length`` before anything is
read, and a deadline for the body once its head has arrived.

Most routes take a few KiB at most (:data:`DEFAULT_MAX_BODY_BYTES`); a handler that takes more
says so with :func:`max_body`. :func:`body_limit_middleware` answers 413 to a declared length
over the route's limit before the handler runs, and caps what ``request.read()`` buffers for a
body sent without a length (chunked). Handlers read with :func:`read_body`, which also gives up
after ``HubDeps.body_timeout_s``. Owner and requester routes check the signature of the request
head before they read (``hub.server.routes._auth``), so a stranger never makes the device buffer
a body of the larger kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from hub.server import appkeys

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "LARGEST_BODY_BYTES",
    "body_limit",
    "body_limit_middleware",
    "max_body",
    "read_body",
]

DEFAULT_MAX_BODY_BYTES = 16 * 1024  # JSON of a few fields, a pairing message, an SDP-free call
LARGEST_BODY_BYTES = 8 * 1024 * 1024  # a consent manifest for a 12 h window stays far below this

_ATTRIBUTE = "max_body_bytes"
Handler = TypeVar("Handler", bound=Callable[..., Any])


def max_body(max_bytes: int) -> Callable[[Handler], Handler]:
    """Mark a route handler as taking bodies of up to ``max_bytes`` (the default is
    :data:`DEFAULT_MAX_BODY_BYTES`)."""
    if not 0 < max_bytes <= LARGEST_BODY_BYTES:
        raise ValueError(f"max_bytes must be 1-{LARGEST_BODY_BYTES}, got {max_bytes}")

    def mark(handler: Handler) -> Handler:
        setattr(handler, _ATTRIBUTE, max_bytes)
        return handler

    return mark


def body_limit(request: web.Request) -> int:
    """The largest body the route of ``request`` takes, in bytes."""
    handler = getattr(request.match_info, "handler", None)
    return int(getattr(handler, _ATTRIBUTE, DEFAULT_MAX_BODY_BYTES))


@web.middleware
async def body_limit_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Refuse a declared body over the route's limit (413, unread); cap the rest."""
    limit = body_limit(request)
    length = request.content_length
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(
            max_size=limit,
            actual_size=length,
            text=f"the body of {request.method} {_route(request)} may be at most {limit} bytes, "
            f"got {length}",
        )
    return await handler(request.clone(client_max_size=limit))


async def read_body(request: web.Request) -> bytes:
    """The whole body (at most the route's limit), or 408 when it does not arrive within
    ``HubDeps.body_timeout_s``."""
    timeout_s = request.app[appkeys.DEPS].body_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=f"the request body did not arrive within {timeout_s:g} s; send it at once"
        ) from None


def _route(request: web.Request) -> str:
    resource = getattr(getattr(request.match_info, "route", None), "resource", None)
    canonical = getattr(resource, "canonical", None)
    return str(canonical) if canonical else request.path[:100]
