"""Alerts while the console is open: each paired doorbell's event stream (``DoorwardClient.events``,
as ``doorward owner watch`` reads it) passed on to the page as Server-Sent Events.

``GET /api/alerts`` answers ``text/event-stream``; each ``data:`` line is one alert as JSON
(``device_id``, ``kind``, ``time``, ``title``, ``body``, ``data``). The page shows them in a list
and, when the owner allowed it, as browser notifications. A doorbell that cannot be reached, or
drops the stream, is tried again every :data:`RETRY_S` seconds while the page listens; the page
gets a ``problem`` alert the first time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from crypto.errors import DoorwardError
from hub.client import EventMessage
from hub.client.profile import PinnedDevice
from hub.console._api import STATE, ConsoleState, device_connection

__all__ = ["ALERT_KINDS", "add_alert_routes", "alert_of"]

logger = logging.getLogger(__name__)

ALERT_KINDS = ("doorbell.pressed", "motion", "request.pending")
MAX_STREAMS = 4  # pages listening at once (each holds one event stream per doorbell)
RETRY_S = 5.0  # between attempts to reach a doorbell's event stream
KEEPALIVE_S = 5.0  # an SSE comment this often, so a closed page frees its place soon
_QUEUE = 256  # alerts waiting for the page; past this, a slow page misses the newest


@dataclass(slots=True)
class _Streams:
    """The alert handlers' tasks, to end them at shutdown."""

    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


_STREAMS = web.AppKey("console_alert_streams", _Streams)


def add_alert_routes(app: web.Application) -> None:
    """The alerts route; at shutdown the open streams end at once."""
    app[_STREAMS] = _Streams()
    app.router.add_get("/api/alerts", alerts)
    app.on_shutdown.append(_end_streams)


async def _end_streams(app: web.Application) -> None:
    for task in list(app[_STREAMS].tasks):
        task.cancel()


def alert_of(device_id: str, event: EventMessage) -> dict[str, Any]:
    """An event as the page shows it: a title and a line of text in plain words."""
    camera = event.data.get("camera")
    if event.kind == "doorbell.pressed":
        title, body = "Someone rang the doorbell", f"camera {camera}" if camera else ""
    elif event.kind == "motion":
        title, body = "Motion", f"camera {camera}" if camera else ""
    elif event.kind == "request.pending":
        title = "A new request for footage"
        body = f"request {event.data.get('request_id', '?')}: decide on the Requests page"
    else:
        title, body = event.kind, ""
    return {
        "device_id": device_id,
        "kind": event.kind,
        "time": event.time_s,
        "title": title,
        "body": body,
        "data": event.data,
    }


async def alerts(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: every paired doorbell's presses, motion and new requests."""
    streams = request.app[_STREAMS].tasks
    if len(streams) >= MAX_STREAMS:
        return web.json_response(
            {
                "error": {
                    "code": "busy",
                    "message": f"{MAX_STREAMS} console pages already listen for alerts; "
                    "close one and reload",
                }
            },
            status=503,
        )
    state = request.app[STATE]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_QUEUE)
    task = asyncio.current_task()
    assert task is not None  # a handler runs in a task
    streams.add(task)
    keys = state.keys()
    try:
        async with asyncio.TaskGroup() as group:
            feeds = [
                group.create_task(_follow(state, device, keys, queue))
                for device in state.profile.devices()
            ]
            try:
                await response.write(b": listening\n\n")
                while True:
                    try:
                        alert = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        await response.write(b": keepalive\n\n")
                        continue
                    line = json.dumps(alert, separators=(",", ":"))
                    await response.write(f"data: {line}\n\n".encode())
            except (ConnectionResetError, ConnectionError):
                logger.debug("console.alerts_closed")
            finally:
                for feed in feeds:
                    feed.cancel()
    finally:
        streams.discard(task)
    return response


async def _follow(
    state: ConsoleState, device: PinnedDevice, keys: Any, queue: asyncio.Queue[dict[str, Any]]
) -> None:
    """Put ``device``'s alerts on ``queue``, reconnecting after a failure, until cancelled."""
    told = False
    while True:
        try:
            async with device_connection(state, device, keys, events=True) as api:
                async for event in api.events(ALERT_KINDS):
                    told = False
                    alert = alert_of(device.device_id, event)
                    # A page this far behind misses alerts (its list says what the device
                    # lists anyway); the device's stream is never held up for it.
                    with contextlib.suppress(asyncio.QueueFull):
                        queue.put_nowait(alert)
        except (DoorwardError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            logger.info(
                "console.alerts_lost device_id=%s error=%s", device.device_id, type(exc).__name__
            )
            if not told:
                told = True
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(
                        {
                            "device_id": device.device_id,
                            "kind": "problem",
                            "title": "No alerts from this doorbell for now",
                            "body": f"{exc}; trying again every {RETRY_S:.0f} s",
                            "time": None,
                            "data": {},
                        }
                    )
        await asyncio.sleep(RETRY_S)
