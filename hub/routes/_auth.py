"""Who is asking: RFC 9421 signatures (``hub._httpsig``) checked per route, and rate limits.

Owner routes accept a signature only by a paired owner that is not removed, looked up on every
request, so removing an owner takes effect at once. Requester routes accept a signature by the
requester's own key (the caller says which). Requester and unauthenticated routes are rate limited
per client address, and requester routes also per key.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from crypto.keys import key_id
from hub import keys
from hub._errors import RateLimited
from hub._httpsig import RequestVerifier, SignatureRejected
from hub._ratelimit import Rate, RateLimiter
from hub._replay import ReplayCache
from hub.owners import Owner

__all__ = ["AuthState", "check_rate", "require_owner", "require_requester"]


@dataclass(slots=True)
class AuthState:
    """The replay cache and rate limiter shared by every route of one app."""

    owners: RequestVerifier
    replay: ReplayCache
    limiter: RateLimiter

    @classmethod
    def create(cls, app: web.Application) -> AuthState:
        deps = app[keys.DEPS]
        replay = ReplayCache(window_s=deps.signature_window_s)

        def lookup(kid: str) -> Ed25519PublicKey | None:
            owner = deps.owners.active(kid)
            return None if owner is None else owner.signing_public

        rate = Rate(per_s=deps.rate_per_s, burst=deps.rate_burst)
        return cls(
            owners=RequestVerifier(
                device_id=deps.device.device_id,
                lookup_key=lookup,
                replay=replay,
                window_s=deps.signature_window_s,
            ),
            replay=replay,
            limiter=RateLimiter({"address": rate, "key": rate}),
        )


async def require_owner(request: web.Request) -> Owner:
    """The paired, not removed owner who signed this request; raises SignatureRejected."""
    app = request.app
    deps = app[keys.DEPS]
    verified = await app[keys.AUTH].owners.verify_aiohttp(request, now_s=deps.clock())
    owner = deps.owners.active(verified.key_id)
    if owner is None:  # removed between lookup and now
        raise SignatureRejected("unknown_key", f"key {verified.key_id} is no longer an owner")
    return owner


async def require_requester(request: web.Request, public_key: Ed25519PublicKey) -> str:
    """Check that ``public_key`` signed this request; returns its key id."""
    app = request.app
    deps = app[keys.DEPS]
    kid = key_id(public_key)
    check_rate(request, key_id=kid)
    verifier = RequestVerifier(
        device_id=deps.device.device_id,
        lookup_key=lambda k: public_key if k == kid else None,
        replay=app[keys.AUTH].replay,
        window_s=deps.signature_window_s,
    )
    verified = await verifier.verify_aiohttp(request, now_s=deps.clock())
    return verified.key_id


def check_rate(request: web.Request, *, key_id: str | None) -> None:
    """Take one token from the client address's bucket (and the key's, if given)."""
    app = request.app
    limiter = app[keys.AUTH].limiter
    now = app[keys.DEPS].clock()
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
