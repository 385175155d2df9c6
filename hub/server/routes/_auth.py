"""Checks that routes run on each request: RFC 9421 signatures (``hub.wire.httpsig``) and rates.

Requester routes accept a signature by the requester's own key (the caller says which). Requester
and unauthenticated routes are rate limited per client address, and requester routes also per key.
"""

from __future__ import annotations

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from crypto.keys import key_id
from hub.server import appkeys
from hub.server.owners import Owner
from hub.wire.errors import RateLimited
from hub.wire.httpsig import RequestVerifier, SignatureRejected

__all__ = ["check_rate", "require_owner", "require_requester"]


async def require_owner(request: web.Request) -> Owner:
    """The paired, not removed owner who signed this request; raises SignatureRejected."""
    app = request.app
    deps = app[appkeys.DEPS]
    verified = await app[appkeys.AUTH].owners.verify_aiohttp(request, now_s=deps.clock())
    owner = deps.owners.active(verified.key_id)
    if owner is None:  # removed between lookup and now
        raise SignatureRejected("unknown_key", f"key {verified.key_id} is no longer an owner")
    return owner


async def require_requester(request: web.Request, public_key: Ed25519PublicKey) -> str:
    """Check that ``public_key`` signed this request; returns its key id."""
    app = request.app
    deps = app[appkeys.DEPS]
    kid = key_id(public_key)
    check_rate(request, key_id=kid)
    verifier = RequestVerifier(
        device_id=deps.device.device_id,
        lookup_key=lambda k: public_key if k == kid else None,
        replay=app[appkeys.AUTH].replay,
        window_s=deps.signature_window_s,
    )
    verified = await verifier.verify_aiohttp(request, now_s=deps.clock())
    return verified.key_id


def check_rate(
    request: web.Request, *, key_id: str | None, app: web.Application | None = None
) -> None:
    """Take one token from the client address's bucket (and the key's, if given), in the limiter
    of ``app`` (default: the request's; the live page's site passes the API's)."""
    app = request.app if app is None else app
    limiter = app[appkeys.AUTH].limiter
    now = app[appkeys.DEPS].clock()
    address = request.remote or "unknown"
    buckets = [("address", address)] if key_id is None else [("key", key_id)]
    for route_class, bucket in buckets:
        decision = limiter.check(route_class, bucket, now_s=now)
        if not decision.allowed:
            raise RateLimited(
                f"too many requests from this {route_class}; retry in "
                f"{decision.retry_after_s:.1f} s",
                retry_after_s=decision.retry_after_s,
            )
