"""Who may ask: the owners' signature verifier, the replay cache and the rate limiter of one app.

Owner routes accept a signature only by a paired owner that is not removed, looked up on every
request, so removing an owner takes effect at once. Failed signatures are counted per client
address (route class :data:`AUTH_FAILURES`); past a burst the address is answered 429. The
route-side checks are in :mod:`hub.server.routes._auth`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hub.server.deps import HubDeps
from hub.server.ratelimit import Rate, RateLimiter
from hub.wire.httpsig import RequestVerifier
from hub.wire.replay import ReplayCache

__all__ = ["AUTH_FAILURES", "AuthState"]

# The limiter's route class for failed signatures, counted per client address.
AUTH_FAILURES = "auth_failure"


@dataclass(slots=True)
class AuthState:
    """The replay cache and rate limiter shared by every route of one app."""

    owners: RequestVerifier
    replay: ReplayCache
    limiter: RateLimiter

    @classmethod
    def create(cls, deps: HubDeps) -> AuthState:
        """The verifier for owners' signatures, the replay cache and the limiter for ``deps``."""
        replay = ReplayCache(window_s=deps.signature_window_s)

        def lookup(kid: str) -> Ed25519PublicKey | None:
            owner = deps.owners.active(kid)
            return None if owner is None else owner.signing_public

        rate = Rate(per_s=deps.rate_per_s, burst=deps.rate_burst)
        failures = Rate(per_s=deps.auth_failure_per_s, burst=deps.auth_failure_burst)
        return cls(
            owners=RequestVerifier(
                device_id=deps.device.device_id,
                lookup_key=lookup,
                replay=replay,
                window_s=deps.signature_window_s,
            ),
            replay=replay,
            limiter=RateLimiter({"address": rate, "key": rate, AUTH_FAILURES: failures}),
        )
