"""Alerts: events in plain words for the page, and the alert stream's bounds (a session cookie,
a cap on pages listening at once)."""

from __future__ import annotations

import contextlib
import json

import aiohttp
import pytest

from hub.client import EventMessage
from hub.console._alerts import MAX_STREAMS, alert_of
from tests.console.consolekit import Console, cookie


@pytest.mark.parametrize(
    ("kind", "data", "title", "body"),
    [
        ("doorbell.pressed", {"camera": "front"}, "Someone rang the doorbell", "camera front"),
        ("motion", {"camera": "yard", "score": 0.4}, "Motion", "camera yard"),
        (
            "request.pending",
            {"request_id": "r1", "requester_key_id": "k"},
            "A new request for footage",
            "request r1: decide on the Requests page",
        ),
    ],
)
def test_an_event_in_plain_words(kind: str, data: dict[str, object], title: str, body: str) -> None:
    alert = alert_of("door1", EventMessage(7, kind, 1700000000.0, data))
    assert alert == {
        "device_id": "door1",
        "kind": kind,
        "time": 1700000000.0,
        "title": title,
        "body": body,
        "data": data,
    }


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_the_alert_stream_needs_the_cookie_and_is_capped(console: Console) -> None:
    status, _, _ = await console.get("/api/alerts")
    assert status == 401
    async with contextlib.AsyncExitStack() as streams:
        for _ in range(MAX_STREAMS):
            response = await streams.enter_async_context(
                console.http.get(console.base + "/api/alerts", headers=cookie())
            )
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            assert await response.content.readline() == b": listening\n"
        status, headers, text = await console.get("/api/alerts", **cookie())
        assert status == 503
        assert json.loads(text)["error"]["message"] == (
            f"{MAX_STREAMS} console pages already listen for alerts; close one and reload"
        )
        assert "access-control-allow-origin" not in headers
    assert isinstance(console.http, aiohttp.ClientSession)
