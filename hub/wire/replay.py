"""Replay cache for signed requests: each (key id, nonce) is accepted once within the window.

A signature is only valid while its ``created`` time is within the verifier's window, so a nonce
needs remembering only until ``created + window``; after that the signature is stale anyway.
Pure: the caller passes ``now_s``.
"""

from __future__ import annotations

import enum
import heapq

__all__ = ["NonceCheck", "ReplayCache"]

# A verified signer may use at most this many nonces per window (60 s by default), about
# 800 requests/s sustained: ample for an owner app under load (the benchmark drives 200
# concurrent clients on one key), while one key, such as a freshly minted requester key that got
# past the rate limiter, cannot fill the whole cache and lock everyone else out.
DEFAULT_MAX_PER_KEY = 50_000
# Requester keys cost nothing to mint, so the total needs a cap too. An entry costs ~250 bytes,
# so this bounds the cache to ~25 MB under a flood of valid signatures from many keys. When it
# is full, new nonces are refused (fail closed) rather than evicting live ones: evicting a live
# nonce would let an attacker flush the cache and then replay a captured request.
DEFAULT_MAX_ENTRIES = 100_000
MAX_NONCE_CHARS = 128


class NonceCheck(enum.Enum):
    """What :meth:`ReplayCache.check_and_add` found: a fresh nonce (now recorded), a replay, or
    no room (``KEY_FULL``: this key's share is used up; ``FULL``: the whole cache): fail closed."""

    FRESH = "fresh"
    REPLAYED = "replayed"
    KEY_FULL = "key_full"
    FULL = "full"


class ReplayCache:
    """Bounded memory of (key id, nonce) pairs still inside the signature window."""

    def __init__(
        self,
        *,
        window_s: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_per_key: int = DEFAULT_MAX_PER_KEY,
    ) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.window_s = window_s
        self.max_entries = max_entries
        self.max_per_key = max_per_key
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, str, str]] = []
        self._per_key: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._expiry)

    def check_and_add(
        self,
        key_id: str,
        nonce: str,
        *,
        created_s: float,
        now_s: float,
        keep_s: float | None = None,
    ) -> NonceCheck:
        """Record the nonce if it is new; say why not otherwise. Call only after verifying.
        ``keep_s`` (at least the window) is how long after ``created_s`` the signature stays
        acceptable: a relayed call's may be accepted longer, so its nonce is kept longer."""
        if not 0 < len(nonce) <= MAX_NONCE_CHARS:
            raise ValueError(f"nonce must be 1-{MAX_NONCE_CHARS} characters, got {len(nonce)}")
        self._expire(now_s)
        entry = (key_id, nonce)
        if entry in self._expiry:
            return NonceCheck.REPLAYED
        if self._per_key.get(key_id, 0) >= self.max_per_key:
            return NonceCheck.KEY_FULL
        if len(self._expiry) >= self.max_entries:
            return NonceCheck.FULL
        # The verifier accepts |now - created| <= window, so the signature goes stale (and the
        # nonce can be forgotten) once now > created + window, whichever side of now it was.
        expires_s = created_s + max(self.window_s, keep_s or 0.0)
        self._expiry[entry] = expires_s
        heapq.heappush(self._heap, (expires_s, key_id, nonce))
        self._per_key[key_id] = self._per_key.get(key_id, 0) + 1
        return NonceCheck.FRESH

    def _expire(self, now_s: float) -> None:
        while self._heap and self._heap[0][0] < now_s:
            _, key_id, nonce = heapq.heappop(self._heap)
            del self._expiry[(key_id, nonce)]
            left = self._per_key[key_id] - 1
            if left:
                self._per_key[key_id] = left
            else:
                del self._per_key[key_id]
