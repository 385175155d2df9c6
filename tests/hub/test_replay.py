"""The replay cache: once per (key, nonce) within the window, bounded per key and in total."""

from __future__ import annotations

import pytest

from hub.wire.replay import NonceCheck, ReplayCache

FRESH, REPLAYED, KEY_FULL, FULL = (
    NonceCheck.FRESH,
    NonceCheck.REPLAYED,
    NonceCheck.KEY_FULL,
    NonceCheck.FULL,
)


def test_second_use_is_a_replay_for_the_same_key_only() -> None:
    cache = ReplayCache(window_s=60)
    assert cache.check_and_add("k1", "n", created_s=100, now_s=100) is FRESH
    assert cache.check_and_add("k1", "n", created_s=100, now_s=110) is REPLAYED
    assert cache.check_and_add("k2", "n", created_s=100, now_s=110) is FRESH


def test_entries_live_until_the_signature_is_stale() -> None:
    cache = ReplayCache(window_s=60)
    cache.check_and_add("k", "past", created_s=40, now_s=100)  # valid until 100
    cache.check_and_add("k", "future", created_s=150, now_s=100)  # valid until 210
    assert cache.check_and_add("k", "past", created_s=40, now_s=100) is REPLAYED
    assert len(cache) == 2
    assert cache.check_and_add("k", "other", created_s=101, now_s=100.5) is FRESH
    assert len(cache) == 2  # "past" expired at 100
    assert cache.check_and_add("k", "future", created_s=150, now_s=210) is REPLAYED
    cache.check_and_add("k", "tick", created_s=211, now_s=211)
    assert len(cache) == 1


def test_one_key_cannot_fill_the_cache() -> None:
    cache = ReplayCache(window_s=60, max_per_key=2, max_entries=10)
    assert cache.check_and_add("flood", "a", created_s=0, now_s=0) is FRESH
    assert cache.check_and_add("flood", "b", created_s=0, now_s=0) is FRESH
    assert cache.check_and_add("flood", "c", created_s=0, now_s=0) is KEY_FULL
    assert cache.check_and_add("owner", "a", created_s=0, now_s=0) is FRESH
    # Once its nonces expire the key may sign again.
    assert cache.check_and_add("flood", "c", created_s=61, now_s=61) is FRESH


def test_full_cache_refuses_rather_than_forgetting_live_nonces() -> None:
    cache = ReplayCache(window_s=60, max_per_key=10, max_entries=3)
    for key in ("a", "b", "c"):
        assert cache.check_and_add(key, "n", created_s=0, now_s=0) is FRESH
    assert cache.check_and_add("d", "n", created_s=0, now_s=0) is FULL
    assert cache.check_and_add("a", "n", created_s=0, now_s=30) is REPLAYED
    assert len(cache) == 3
    assert cache.check_and_add("d", "n", created_s=61, now_s=61) is FRESH
    assert len(cache) == 1


@pytest.mark.parametrize("nonce", ["", "x" * 129])
def test_nonce_length_is_bounded(nonce: str) -> None:
    with pytest.raises(ValueError, match=rf"^nonce must be 1-128 characters, got {len(nonce)}$"):
        ReplayCache(window_s=60).check_and_add("k", nonce, created_s=0, now_s=0)


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"^window_s must be positive, got 0$"):
        ReplayCache(window_s=0)
