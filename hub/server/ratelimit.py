"""Token-bucket rate limits keyed by (route class, key id or client address). Pure: pass ``now_s``.

Each route class has a :class:`Rate`: a bucket holds up to ``burst`` tokens and refills at
``per_s`` tokens per second; a request takes one token (or ``cost``). Buckets live in an LRU map
capped at ``max_keys``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Rate", "RateDecision", "RateLimiter"]

# Peers choose their keys (requester keys are free to mint, addresses can be spoofed on a LAN),
# so the map of buckets must be bounded. Evicting the least recently used bucket forgets its
# debt: a flood of fresh keys can refill an old key's burst at worst, never grow memory.
DEFAULT_MAX_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class Rate:
    """``burst`` requests at once, then ``per_s`` requests per second."""

    per_s: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.per_s > 0 and math.isfinite(self.per_s)):
            raise ValueError(f"per_s must be a positive number, got {self.per_s}")
        if not (self.burst >= 1 and math.isfinite(self.burst)):
            raise ValueError(f"burst must be at least 1, got {self.burst}")


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a request may go ahead, and if not how many seconds until a token is free."""

    allowed: bool
    retry_after_s: float  # 0 when allowed


class _Bucket:
    __slots__ = ("tokens", "updated_s")

    def __init__(self, tokens: float, updated_s: float) -> None:
        self.tokens = tokens
        self.updated_s = updated_s


class RateLimiter:
    """Token buckets per (route class, key), one :class:`Rate` per route class."""

    def __init__(self, rates: Mapping[str, Rate], *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self._rates = dict(rates)
        self.max_keys = max_keys
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, route_class: str, key: str, *, now_s: float, cost: float = 1.0) -> RateDecision:
        """Take ``cost`` tokens from the bucket if it has them; otherwise say when to retry."""
        rate = self._rates.get(route_class)
        if rate is None:
            raise KeyError(f"no rate for route class {route_class!r}")
        if cost > rate.burst:
            raise ValueError(f"cost must be at most the burst {rate.burst}, got {cost}")
        bucket_key = (route_class, key)
        bucket = self._buckets.get(bucket_key)
        if bucket is None:
            bucket = _Bucket(rate.burst, now_s)
            self._buckets[bucket_key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(bucket_key)
            # A clock that steps back must not mint tokens; monotonic clocks never do.
            elapsed_s = max(0.0, now_s - bucket.updated_s)
            bucket.tokens = min(rate.burst, bucket.tokens + elapsed_s * rate.per_s)
            bucket.updated_s = max(bucket.updated_s, now_s)
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return RateDecision(True, 0.0)
        return RateDecision(False, (cost - bucket.tokens) / rate.per_s)
