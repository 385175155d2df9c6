"""Token buckets per (route class, key): burst, refill, isolation, LRU cap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.server.ratelimit import Rate, RateDecision, RateLimiter

RATES = {"requester": Rate(per_s=1.0, burst=3), "pairing": Rate(per_s=0.5, burst=1)}


def test_burst_then_refill() -> None:
    limiter = RateLimiter(RATES)
    assert [limiter.check("requester", "k", now_s=0).allowed for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    assert limiter.check("requester", "k", now_s=0) == RateDecision(False, 1.0)
    assert limiter.check("requester", "k", now_s=0.5) == RateDecision(False, 0.5)
    assert limiter.check("requester", "k", now_s=1.0) == RateDecision(True, 0.0)
    # A long pause refills up to the burst, not beyond.
    assert [limiter.check("requester", "k", now_s=100).allowed for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


def test_keys_and_route_classes_are_separate() -> None:
    limiter = RateLimiter(RATES)
    assert limiter.check("pairing", "10.0.0.5", now_s=0).allowed
    assert not limiter.check("pairing", "10.0.0.5", now_s=0).allowed
    assert limiter.check("pairing", "10.0.0.6", now_s=0).allowed
    assert limiter.check("requester", "10.0.0.5", now_s=0).allowed
    assert limiter.check("pairing", "10.0.0.5", now_s=0.5) == RateDecision(False, 1.5)


def test_cost() -> None:
    limiter = RateLimiter(RATES)
    assert limiter.check("requester", "k", now_s=0, cost=3).allowed
    assert limiter.check("requester", "k", now_s=0, cost=2) == RateDecision(False, 2.0)
    with pytest.raises(ValueError, match=r"^cost must be at most the burst 3, got 4$"):
        limiter.check("requester", "k", now_s=0, cost=4)


def test_lru_cap_evicts_the_least_recently_used_bucket() -> None:
    limiter = RateLimiter(RATES, max_keys=2)
    limiter.check("pairing", "a", now_s=0)
    limiter.check("pairing", "b", now_s=0)
    assert not limiter.check("pairing", "a", now_s=0).allowed  # a is now most recent
    limiter.check("pairing", "c", now_s=0)  # evicts b
    assert len(limiter) == 2
    assert not limiter.check("pairing", "a", now_s=0).allowed  # a kept its empty bucket
    assert limiter.check("pairing", "b", now_s=0).allowed  # b starts over


def test_clock_stepping_back_mints_nothing() -> None:
    limiter = RateLimiter(RATES)
    limiter.check("pairing", "a", now_s=100)
    assert not limiter.check("pairing", "a", now_s=50).allowed
    assert not limiter.check("pairing", "a", now_s=101).allowed
    assert limiter.check("pairing", "a", now_s=102).allowed


def test_unknown_route_class() -> None:
    with pytest.raises(KeyError, match="no rate for route class 'owner'"):
        RateLimiter(RATES).check("owner", "k", now_s=0)


@pytest.mark.parametrize(
    ("per_s", "burst", "message"),
    [
        (0, 1, "per_s must be a positive number, got 0"),
        (float("inf"), 1, "per_s must be a positive number, got inf"),
        (1, 0.5, "burst must be at least 1, got 0.5"),
    ],
)
def test_rate_validation(per_s: float, burst: float, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        Rate(per_s, burst)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=60))
def test_never_more_than_burst_plus_refill(gaps: list[float]) -> None:
    limiter = RateLimiter(RATES)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        allowed += limiter.check("requester", "k", now_s=now).allowed
    assert allowed <= 3 + now * 1.0 + 1e-9
