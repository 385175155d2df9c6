"""Failed signatures are counted per address group: every address of one IPv6 /64 shares the
bucket, as the connection guard and the request desk count them, so rotating addresses inside a
/64 does not reset the count."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from hub.server import appkeys
from hub.server.auth import AUTH_FAILURES
from hub.server.ratelimit import Rate, RateLimiter
from hub.server.routes._auth import _failed
from hub.wire.errors import RateLimited
from hub.wire.httpsig import SignatureRejected


def _request(app: web.Application, address: str) -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (address, 443, 0, 0) if name == "peername" else default
    )
    return make_mocked_request("GET", "/health", app=app, transport=transport)


def _app(burst: int) -> web.Application:
    app = web.Application()
    limiter = RateLimiter({AUTH_FAILURES: Rate(per_s=0.001, burst=burst)})
    app[appkeys.AUTH] = SimpleNamespace(limiter=limiter)  # type: ignore[assignment]
    app[appkeys.DEPS] = SimpleNamespace(clock=lambda: 1000.0)  # type: ignore[assignment]
    return app


@pytest.mark.parametrize(
    ("first", "rotated", "limited"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", True),  # same /64
        ("2001:db8:1:2::1", "2001:db8:1:3::1", False),  # the next /64 is someone else
        ("192.0.2.1", "192.0.2.2", False),  # IPv4 counts per address
    ],
)
def test_failed_signatures_are_counted_per_address_group(
    first: str, rotated: str, limited: bool
) -> None:
    app = _app(burst=3)
    rejected = SignatureRejected("bad_signature", "signature does not verify")
    for _ in range(3):
        assert _failed(_request(app, first), rejected) is rejected
    result = _failed(_request(app, rotated), rejected)
    assert isinstance(result, RateLimited) is limited
