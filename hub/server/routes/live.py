"""Live-view routes: an owner's signed WebRTC offer, live links, and the browser page they open.

- ``POST /live/offer`` (owner-signed): ``{"sdp", "camera"?}`` in, ``{"sdp", "type": "answer",
  "session_id", "camera"}`` out.
- ``POST /live/link`` (owner-signed): ``{"token"}`` (minted by the owner, ``hub.wire.live_link``) in,
  ``{"url", "expires"}`` out: the page URL carrying the token.
- ``GET /live/page?t=…``, ``/live/page.js``, ``/live/page.css``: the static page (no external
  resources).
- ``POST /live/link-offer``: ``{"token", "sdp"}`` from the page; uses the link once. An offer
  that sends audio gets hold-to-talk (``hub.server.live.press_talk``); ``"talk"`` in the answer
  says whether the camera has a speaker to talk on.
- ``POST /live/link-talk``: ``{"feed", "talk": true|false}`` from the page while its talk button
  is pressed and let go, authorised by the session's feed secret; a press while someone else
  plays on the speaker is refused (409 ``speaker_busy``, naming who).
- ``GET /live/link-events?feed=…``: Server-Sent Events (doorbell presses, motion, the end of
  the session) for the page, authorised by the session's feed secret; at most
  ``MAX_STREAMS_PER_SESSION`` per session (``hub.server.live.page_feeds``), none of them counted
  against the owners' ``/events`` streams.

Registered by :func:`hub.server.app.create_app` when given a :class:`LiveSetup`. The page port's
site (:func:`hub.server.app.create_page_app`, :func:`add_page_routes`) has the page and its
calls only, working on the API app's live state.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from yarl import URL

from hub.server import appkeys
from hub.server.body import max_body
from hub.server.events import EventBus, Subscription
from hub.server.live.links import LinkBook
from hub.server.live.page_feeds import PageFeeds
from hub.server.live.relay import FrameRelay, LiveConfig, LiveSessions
from hub.server.routes._auth import check_rate, require_owner
from hub.server.routes._params import json_body, str_field
from hub.wire.errors import BadRequest, Conflict, NotFound
from hub.wire.events import EVENT_KINDS, Event
from hub.wire.live_link import LinkInvalid, parse_link_token

__all__ = ["LINKS", "LIVE", "PAGE_FEEDS", "RELAY", "LiveSetup", "add_page_routes", "add_routes"]

logger = logging.getLogger(__name__)

RELAY: web.AppKey[FrameRelay] = web.AppKey("live_relay", FrameRelay)
LIVE: web.AppKey[LiveSessions] = web.AppKey("live_sessions", LiveSessions)
LINKS: web.AppKey[LinkBook] = web.AppKey("live_links", LinkBook)
PAGE_FEEDS: web.AppKey[PageFeeds] = web.AppKey("live_page_feeds", PageFeeds)
# On the page port's site: the API app whose live state it works on.
_API: web.AppKey[web.Application] = web.AppKey("live_api", web.Application)
_CONFIG: web.AppKey[LiveConfig] = web.AppKey("live_config", LiveConfig)


@dataclass(frozen=True, slots=True)
class LiveSetup:
    """Live view for :func:`hub.server.app.create_app`: the pipelines' frame relay, the session
    limits, the port of the browser-facing site (``hub.server.live.page_tls``; None: links point
    at the port the owner used) and the sleep that times the session maximum."""

    relay: FrameRelay
    config: LiveConfig = field(default_factory=LiveConfig)
    page_port: int | None = None
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)


_SETUP: web.AppKey[LiveSetup] = web.AppKey("live_setup", LiveSetup)

_STATIC = Path(__file__).resolve().parent.parent / "live" / "static"
_PAGE_HEADERS = {
    # The page loads only its own script and talks only to this device.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; media-src 'self' blob:; base-uri 'none'; form-action 'none'"
    ),
    # The microphone only for the page itself (hold-to-talk); no camera, no other feature.
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=(), display-capture=()",
    "Referrer-Policy": "no-referrer",  # the URL carries the link token
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
_FEED_KINDS = frozenset({"doorbell.pressed", "motion"})
_WATCHED_KINDS = frozenset({"owner.removed", *_FEED_KINDS})
# Bodies (hub.server.body): an SDP offer (at most 64 KiB) and a link token, escaped in JSON.
_OFFER_BODY_BYTES = 160 * 1024
_LINK_BODY_BYTES = 32 * 1024
_TALK_BODY_BYTES = 1024  # a feed secret and a flag


def add_routes(app: web.Application, setup: LiveSetup) -> None:
    """Add live view to the app ``hub.server.app.create_app`` is building."""
    app[_SETUP] = setup
    app[RELAY] = setup.relay
    app[_CONFIG] = setup.config
    app[LINKS] = LinkBook()
    app.cleanup_ctx.append(_live_sessions)
    app.router.add_routes(
        [web.post("/live/offer", offer), web.post("/live/link", link), *_page_routes()]
    )


def add_page_routes(page_site: web.Application, api: web.Application) -> None:
    """Make ``page_site`` the page port's site for ``api`` (an app with live view): the page,
    its script and style, ``POST /live/link-offer``, ``POST /live/link-talk`` and
    ``GET /live/link-events``, no other route.
    Start ``api`` first and stop ``page_site`` first."""
    page_site[_API] = api
    page_site.on_shutdown.append(_end_page_streams)
    page_site.router.add_routes(_page_routes())


def _page_routes() -> list[web.RouteDef]:
    return [
        web.get("/live/page", page),
        web.get("/live/page.js", page_script),
        web.get("/live/page.css", page_style),
        web.post("/live/link-offer", link_offer),
        web.post("/live/link-talk", link_talk),
        web.get("/live/link-events", link_events),
    ]


def _api(request: web.Request) -> web.Application:
    """The app holding live view's state: the request's own, or the API app of the page site."""
    return request.app.get(_API, request.app)


async def _end_page_streams(page_site: web.Application) -> None:
    feeds = page_site[_API].get(PAGE_FEEDS)
    if feeds is not None:
        feeds.close()


async def _live_sessions(app: web.Application) -> AsyncIterator[None]:
    writes = app[appkeys.WORKER]
    deps = app[appkeys.DEPS]
    bus = app[appkeys.BUS]

    async def audit(kind: str, fields: dict[str, Any]) -> None:
        await writes.run(lambda: deps.audit.append(kind, **fields))

    def publish(kind: str, fields: dict[str, Any]) -> None:
        # hub.server.events lists the kinds owners may stream; live.* are published once listed there.
        if kind in EVENT_KINDS:
            bus.publish(kind, **fields)

    feeds = PageFeeds(clock=deps.clock)
    app[PAGE_FEEDS] = feeds
    sessions = LiveSessions(
        app[RELAY],
        answer=_answer_offer,
        audit=audit,
        publish=publish,
        config=app[_CONFIG],
        sleep=app[_SETUP].sleep,
        speakers=app[appkeys.SPEAKERS],
    )
    app[LIVE] = sessions
    # One subscription serves the whole live view: removed owners' sessions end, and the pages
    # get their cameras' events (through capped per-session buses, not the owners' slots).
    watched = bus.subscribe(_WATCHED_KINDS)
    watcher = asyncio.ensure_future(_watch_bus(bus, watched, sessions, feeds))
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    feeds.close()
    await sessions.close()


async def _answer_offer(
    offer_sdp: str,
    relay: FrameRelay,
    camera: str,
    on_closed: Callable[[], None],
    claim_talk: Callable[[], None],
) -> Any:
    """``hub.server.live.webrtc.answer_offer``, imported on the first live request: aiortc takes a while to
    load, which ``doorward serve`` should not pay before it answers (imported off the event loop
    so the pipelines keep running meanwhile)."""
    webrtc = await asyncio.to_thread(importlib.import_module, "hub.server.live.webrtc")
    return await webrtc.answer_offer(offer_sdp, relay, camera, on_closed, claim_talk=claim_talk)


async def _watch_bus(
    bus: EventBus, watched: Subscription | None, sessions: LiveSessions, feeds: PageFeeds
) -> None:
    """End removed owners' sessions and feed the pages, until the bus closes (shutdown); if
    the bus dropped this subscriber for falling behind, subscribe again."""
    try:
        while watched is not None:
            async for event in watched:
                if event.kind != "owner.removed":
                    feeds.publish(event)
                    continue
                key_id = str(event.data.get("key_id"))
                ended = await sessions.end_owner(key_id)
                if ended:
                    logger.info("live.owner_removed key_id=%s sessions=%d", key_id, ended)
            if not watched.dropped:
                return
            logger.warning("live.event_feed_dropped; subscribing again")
            watched = bus.subscribe(_WATCHED_KINDS)
        logger.error("live.no_event_feed reason=event bus full")
    finally:
        if watched is not None:
            watched.close()


# -- owner routes -------------------------------------------------------------------------------


@max_body(_OFFER_BODY_BYTES)
async def offer(request: web.Request) -> web.Response:
    owner = await require_owner(request)
    body = await json_body(request)
    sdp = str_field(body, "sdp")
    camera = _camera(request.app, body.get("camera"))
    session, answer = await request.app[LIVE].start(
        owner_key_id=owner.key_id, camera=camera, offer_sdp=sdp, via="owner"
    )
    return web.json_response(
        {"sdp": answer, "type": "answer", "session_id": session.session_id, "camera": camera}
    )


@max_body(_LINK_BODY_BYTES)
async def link(request: web.Request) -> web.Response:
    owner = await require_owner(request)
    deps = request.app[appkeys.DEPS]
    token = str_field(await json_body(request), "token")
    claims = _parse(request.app, token)
    if claims.owner_key_id != owner.key_id:
        raise LinkInvalid("a live link must be signed by the owner who registers it")
    _camera(request.app, claims.camera)
    request.app[LINKS].register(claims, deps.clock())
    url = URL.build(scheme=request.scheme, authority=request.host, path="/live/page")
    port = request.app[_SETUP].page_port
    if port is not None:
        url = url.with_port(port)
    logger.info("live.link_minted owner=%s camera=%s", owner.key_id, claims.camera)
    return web.json_response({"url": str(url.with_query(t=token)), "expires": claims.expires_s})


# -- the page and its routes --------------------------------------------------------------------


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        _STATIC / "live.html", headers={**_PAGE_HEADERS, "Content-Type": "text/html; charset=utf-8"}
    )


async def page_script(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        _STATIC / "live.js",
        headers={**_PAGE_HEADERS, "Content-Type": "text/javascript; charset=utf-8"},
    )


async def page_style(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        _STATIC / "live.css", headers={**_PAGE_HEADERS, "Content-Type": "text/css; charset=utf-8"}
    )


@max_body(_OFFER_BODY_BYTES)
async def link_offer(request: web.Request) -> web.Response:
    api = _api(request)
    check_rate(request, key_id=None, app=api)
    deps = api[appkeys.DEPS]
    sessions = api[LIVE]
    body = await json_body(request)
    token = str_field(body, "token")
    sdp = str_field(body, "sdp")
    claims = _parse(api, token)
    _camera(api, claims.camera)
    api[LINKS].consume(claims, deps.clock())
    session, answer = await sessions.start(
        owner_key_id=claims.owner_key_id,
        camera=claims.camera,
        offer_sdp=sdp,
        via="link",
        press_to_talk=True,
    )
    talk = session.press_talk
    return web.json_response(
        {
            "sdp": answer,
            "type": "answer",
            "session_id": session.session_id,
            "camera": claims.camera,
            "feed": session.feed_secret,
            "expires": claims.expires_s,
            "talk": talk is not None and talk.available,
        }
    )


@max_body(_TALK_BODY_BYTES)
async def link_talk(request: web.Request) -> web.Response:
    api = _api(request)
    check_rate(request, key_id=None, app=api)
    body = await json_body(request)
    secret = str_field(body, "feed")
    talking = body.get("talk")
    if not isinstance(talking, bool):
        raise BadRequest("talk must be true (the button is held) or false (it was let go)")
    session = api[LIVE].by_feed_secret(secret)
    if session is None:
        raise NotFound("no live session has this feed; the session may have ended")
    talk = session.press_talk
    if talk is None:
        raise BadRequest(
            "this live session does not send sound; offer to send audio (sendrecv) to talk"
        )
    if talking:
        await talk.press()
    else:
        await talk.release()
    return web.json_response({"talk": talk.pressed})


async def link_events(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    check_rate(request, key_id=None, app=api)
    secret = request.query.get("feed", "")
    session = api[LIVE].by_feed_secret(secret) if secret else None
    if session is None:
        raise NotFound("no live session has this feed; the session may have ended")
    feeds = api[PAGE_FEEDS]
    subscription = feeds.subscribe(session, _FEED_KINDS)
    if subscription is None:
        raise Conflict(
            f"this live session already has {feeds.max_per_session} event streams open; "
            "close one and retry",
            code="busy",
        )
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    ended = asyncio.ensure_future(session.ended.wait())
    try:
        await response.prepare(request)
        await response.write(b": live view events\n\n")
        while not session.ended.is_set():
            getter = asyncio.ensure_future(subscription.get())
            await asyncio.wait({getter, ended}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            event = getter.result()
            if event is None:
                break
            await response.write(_sse(event))  # PageFeeds sends only this session's camera
        await response.write(
            f"event: ended\ndata: {json.dumps({'reason': session.end_reason})}\n\n".encode()
        )
    except ConnectionResetError:
        logger.info("live.feed_lost session_id=%s", session.session_id)
    finally:
        ended.cancel()
        subscription.close()
    return response


def _sse(event: Event) -> bytes:
    return f"event: {event.kind}\ndata: {json.dumps(event.to_json())}\n\n".encode()


def _parse(app: web.Application, token: str) -> Any:
    deps = app[appkeys.DEPS]

    def owner_key(kid: str) -> Any:
        owner = deps.owners.active(kid)
        return None if owner is None else owner.signing_public

    return parse_link_token(
        token, device_id=deps.device.device_id, owner_key=owner_key, now_s=deps.clock()
    )


def _camera(app: web.Application, name: Any) -> str:
    cameras = app[RELAY].cameras
    if name is None:
        if not cameras:
            raise NotFound("this device has no camera to watch")
        return cameras[0]
    if not isinstance(name, str) or name not in cameras:
        shown = name[:64] if isinstance(name, str) else type(name).__name__
        raise NotFound(f"no camera named {shown!r}; GET /cameras lists them")
    return name
