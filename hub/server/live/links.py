"""The live links a device accepted: registered by their owner, each usable once.

The token format is :mod:`hub.wire.live_link`; this book caps what a signed owner can pile up.
"""

from __future__ import annotations

from hub.wire.errors import Conflict
from hub.wire.live_link import LinkClaims, LinkInvalid, LinkUsed

__all__ = ["MAX_PENDING_LINKS", "LinkBook"]

MAX_PENDING_LINKS = 64  # registered but unused links; caps what a signed owner can pile up


class LinkBook:
    """Registered links, each usable once: ``register`` then ``consume``; expired ones are pruned."""

    def __init__(self, *, max_pending: int = MAX_PENDING_LINKS) -> None:
        self._max = max_pending
        self._pending: dict[str, LinkClaims] = {}
        self._used: dict[str, int] = {}  # jti -> exp, so a reuse says "used", not "unknown"

    def register(self, claims: LinkClaims, now_s: float) -> None:
        """Accept a freshly minted link; refuses a jti seen before and too many pending links."""
        self._prune(now_s)
        if claims.jti in self._pending or claims.jti in self._used:
            raise LinkUsed("this live link was already registered; mint a new one")
        if len(self._pending) >= self._max:
            raise Conflict(
                f"{self._max} live links are waiting to be used; let some expire first",
                code="busy",
            )
        self._pending[claims.jti] = claims

    def consume(self, claims: LinkClaims, now_s: float) -> None:
        """Use a registered link once; a second use raises LinkUsed."""
        self._prune(now_s)
        if claims.jti in self._used:
            raise LinkUsed("this live link was already used; ask the owner for a new one")
        registered = self._pending.pop(claims.jti, None)
        if registered is None or registered.owner_key_id != claims.owner_key_id:
            raise LinkInvalid("this live link was never registered with the doorbell")
        self._used[claims.jti] = claims.expires_s

    def _prune(self, now_s: float) -> None:
        for jti in [j for j, c in self._pending.items() if c.expires_s <= now_s]:
            del self._pending[jti]
        for jti in [j for j, exp in self._used.items() if exp <= now_s]:
            del self._used[jti]
