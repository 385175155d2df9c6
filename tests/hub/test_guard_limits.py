"""The guard's numbers: the connection capacity left by the descriptor limit, the options'
checks, and what aiohttp is told."""

from __future__ import annotations

import re

import pytest

from hub.server.config import ConfigError, ServeConfig
from hub.server.guard import GuardLimits, _address_key, connection_capacity, request_limits


def test_connections_get_what_the_descriptor_limit_leaves_after_the_reserve() -> None:
    limits = GuardLimits(max_connections=512, descriptor_reserve=128)
    assert connection_capacity(limits, descriptor_limit=256, open_now=18) == 110
    assert connection_capacity(limits, descriptor_limit=65536, open_now=18) == 512


def test_a_descriptor_limit_that_leaves_nothing_is_a_clear_error() -> None:
    limits = GuardLimits(descriptor_reserve=128)
    with pytest.raises(ConfigError) as raised:
        connection_capacity(limits, descriptor_limit=128, open_now=20)
    assert str(raised.value) == (
        "the descriptor limit (128) leaves no room for connections: 20 descriptors are open "
        "and descriptor_reserve keeps 128 for recording; raise the limit (ulimit -n, or "
        "LimitNOFILE= for a systemd service) or lower descriptor_reserve"
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"max_connections": 0}, "max_connections must be >= 1, got 0"),
        (
            {"max_connections_per_address": 600},
            "max_connections_per_address must be at most max_connections (512), got 600",
        ),
        ({"descriptor_reserve": 1}, "descriptor_reserve must be >= 16, got 1"),
        ({"header_timeout_s": 0.0}, "header_timeout_s must be > 0, got 0.0"),
        ({"auth_failure_per_s": -1.0}, "auth_failure_per_s must be > 0, got -1.0"),
        ({"log_repeats": 0}, "log_repeats must be >= 1, got 0"),
    ],
)
def test_options_are_checked(option: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ServeConfig(**option)  # type: ignore[arg-type]


def test_aiohttp_gets_the_keep_alive_and_head_limits() -> None:
    limits = request_limits(ServeConfig(keepalive_s=7.0))
    assert limits["keepalive_timeout"] == 7.0
    assert limits["max_headers"] == 64
    assert 0 < limits["lingering_time"] <= 2
    assert GuardLimits.from_config(ServeConfig(max_connections_per_address=8)).per_address == 8


def test_an_ipv6_host_counts_as_its_slash_64() -> None:
    assert _address_key(("192.0.2.7", 50000)) == "192.0.2.7"
    assert _address_key(("2001:db8::1:2:3:4", 50000, 0, 0)) == "2001:db8::/64"
    assert _address_key(("2001:db8::ffff:1", 50000, 0, 0)) == "2001:db8::/64"
    assert _address_key(("::ffff:192.0.2.7", 50000, 0, 0)) == "192.0.2.7"
