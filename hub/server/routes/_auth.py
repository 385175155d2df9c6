"""Checks that routes run on each request: RFC 9421 signatures (``hub.wire.httpsig``) and rates.

Requester routes accept a signature by the requester's own key (the caller says which). Requester
and unauthenticated routes are rate limited per client address, and requester routes also per key.

A signature is checked from the request head before any body is read (it covers the body only
through ``Content-Digest``): a stranger's request is refused without the device buffering its
body. Every failed signature takes a token from the client address's failure bucket; once it is
empty the address is answered 429 until it refills. A connection that carried a valid owner
signature is marked trusted for the connection guard (``hub.server.guard``), which then never
evicts it to make room for strangers.
"""

from __future__ import annotations

import logging

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from crypto.keys import key_id
from hub.server import appkeys
from hub.server.auth import AUTH_FAILURES
from hub.server.body import read_body
from hub.server.owners import Owner
from hub.server.relayed import client_address, signature_max_age_s
from hub.wire.errors import RateLimited
from hub.wire.httpsig import RequestVerifier, SignatureRejected, SignedHead, VerifiedRequest

__all__ = ["check_rate", "precheck_signature", "require_owner", "require_requester"]

logger = logging.getLogger(__name__)


async def require_owner(request: web.Request) -> Owner:
    """The paired, not removed owner who signed this request; raises SignatureRejected (or
    RateLimited after too many failures from the address)."""
    app = request.app
    deps = app[appkeys.DEPS]
    verifier = app[appkeys.AUTH].owners
    now = deps.clock()
    head = _verified_head(request, verifier, now)
    guard = app.get(appkeys.GUARD)
    if guard is not None:
        # A verified head earns the connection its place before the body is read, so an owner's
        # large upload is not evicted under a flood; a replayed head would need the plaintext of
        # a TLS session, and its body still fails the digest and nonce checks below.
        guard.trust(request.transport)
    verified = _verified_body(request, verifier, head, await read_body(request), now)
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
    now = deps.clock()
    head = _verified_head(request, verifier, now)
    return _verified_body(request, verifier, head, await read_body(request), now).key_id


def precheck_signature(request: web.Request) -> str:
    """Before reading the body of a route whose key is inside it (``POST /requests``): the
    signature fields must be present, well formed, for this device and fresh. Returns the key
    id they claim; failures count as failed authentication."""
    app = request.app
    try:
        return app[appkeys.AUTH].owners.precheck(
            request.headers, now_s=app[appkeys.DEPS].clock(), max_age_s=signature_max_age_s(request)
        )
    except SignatureRejected as exc:
        raise _failed(request, exc) from None


def check_rate(
    request: web.Request, *, key_id: str | None, app: web.Application | None = None
) -> None:
    """Take one token from the client address's bucket (and the key's, if given), in the limiter
    of ``app`` (default: the request's; the live page's site passes the API's)."""
    app = request.app if app is None else app
    limiter = app[appkeys.AUTH].limiter
    now = app[appkeys.DEPS].clock()
    address = client_address(request)
    buckets = [("address", address)] if key_id is None else [("key", key_id)]
    for route_class, bucket in buckets:
        decision = limiter.check(route_class, bucket, now_s=now)
        if not decision.allowed:
            raise RateLimited(
                f"too many requests from this {route_class}; retry in "
                f"{decision.retry_after_s:.1f} s",
                retry_after_s=decision.retry_after_s,
            )


def _verified_head(request: web.Request, verifier: RequestVerifier, now: float) -> SignedHead:
    try:
        return verifier.verify_head(
            request.method,
            str(request.url),
            request.headers,
            now_s=now,
            max_age_s=signature_max_age_s(request),
        )
    except SignatureRejected as exc:
        raise _failed(request, exc) from None


def _verified_body(
    request: web.Request, verifier: RequestVerifier, head: SignedHead, body: bytes, now: float
) -> VerifiedRequest:
    try:
        return verifier.verify_body(head, request.headers, body, now_s=now)
    except SignatureRejected as exc:
        raise _failed(request, exc) from None


def _failed(request: web.Request, exc: SignatureRejected) -> Exception:
    """``exc``, counted against the client address; RateLimited once the address has failed
    too often."""
    if exc.code == "busy":  # the device's replay cache is full: not the client's failure
        return exc
    app = request.app
    address = client_address(request)
    decision = app[appkeys.AUTH].limiter.check(
        AUTH_FAILURES, address, now_s=app[appkeys.DEPS].clock()
    )
    if decision.allowed:
        return exc
    return RateLimited(
        f"too many failed signatures from this address; retry in {decision.retry_after_s:.1f} s",
        retry_after_s=decision.retry_after_s,
    )
