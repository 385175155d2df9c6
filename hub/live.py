"""Live view: one relay of the running pipelines' frames, and the WebRTC sessions that watch it.

:class:`FrameRelay` is fed by each camera pipeline's ``on_frame`` hook, so a viewer never opens
the camera again: however many watch, the camera is captured once. Each viewer has a one-frame
slot that the relay overwrites, so a viewer that stalls only skips pictures; the relay never waits
and never slows recording.

:class:`LiveSessions` starts and ends sessions: at most ``max_viewers`` at once, each ended on
hang-up, when its owner is removed, after ``max_session_s``, or at shutdown. ``live.started`` and
``live.ended`` go to the audit log and the event bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hardware._frames import Frame
from hub._errors import Conflict, NotFound
from hub._live_h264 import H264Feed, PacketViewer

__all__ = [
    "FrameRelay",
    "H264Feed",
    "LiveConfig",
    "LiveSession",
    "LiveSessions",
    "PacketViewer",
    "Viewer",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """Limits of live view."""

    max_viewers: int = 4
    max_session_s: float = 600.0
    # How long an answer may take (ICE gathering on the LAN is quick; this bounds a stuck one).
    answer_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if self.max_viewers < 1:
            raise ValueError(f"max_viewers must be >= 1, got {self.max_viewers}")
        if self.max_session_s <= 0:
            raise ValueError(f"max_session_s must be > 0, got {self.max_session_s}")


class Viewer:
    """One viewer's view of a camera: the latest frame not yet taken (older ones are skipped)."""

    def __init__(self, relay: FrameRelay, camera: str) -> None:
        self.camera = camera
        self.skipped = 0  # frames overwritten before this viewer took them
        self._relay = relay
        self._latest: Frame | None = None
        self._ready = asyncio.Event()
        self.closed = False

    def offer(self, frame: Frame) -> None:
        """Keep ``frame`` as the latest (on the event loop; never blocks)."""
        if self._latest is not None:
            self.skipped += 1
        self._latest = frame
        self._ready.set()

    async def next(self) -> Frame | None:
        """The newest frame since the last call; None once the viewer is closed."""
        while self._latest is None and not self.closed:
            self._ready.clear()
            await self._ready.wait()
        frame, self._latest = self._latest, None
        return None if self.closed else frame

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._ready.set()
            self._relay._remove(self)


class FrameRelay:
    """Fans the frames of each running pipeline out to its viewers (everything on the loop):
    raw frames to each Viewer, and H.264 made once per camera (``hub._live_h264``) to each
    PacketViewer."""

    def __init__(self) -> None:
        self._viewers: dict[str, list[Viewer]] = {}
        self._h264: dict[str, H264Feed] = {}
        self.frames_in: dict[str, int] = {}

    def add_camera(
        self, camera: str, *, extradata: bytes | None = None
    ) -> Callable[[Frame, Any], None]:
        """Register a camera (``extradata``: its H.264 parameter sets, if any); returns the hook
        to pass as the pipeline's ``on_frame``."""
        self._viewers.setdefault(camera, [])
        self._h264.setdefault(camera, H264Feed(camera, extradata=extradata))
        self.frames_in.setdefault(camera, 0)
        return lambda frame, _result: self.push(camera, frame)

    def h264(self, camera: str) -> H264Feed:
        """The camera's H.264 feed (passthrough or one shared encode)."""
        if camera not in self._h264:
            raise NotFound(f"no camera named {camera[:64]!r}; GET /cameras lists them")
        return self._h264[camera]

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self._viewers)

    def push(self, camera: str, frame: Frame) -> None:
        """Hand one captured frame to every viewer of ``camera`` (must run on the event loop)."""
        self.frames_in[camera] = self.frames_in.get(camera, 0) + 1
        for viewer in self._viewers.get(camera, ()):
            viewer.offer(frame)
        feed = self._h264.get(camera)
        if feed is not None:
            feed.push(frame)

    def subscribe(self, camera: str) -> Viewer:
        if camera not in self._viewers:
            raise NotFound(f"no camera named {camera[:64]!r}; GET /cameras lists them")
        viewer = Viewer(self, camera)
        self._viewers[camera].append(viewer)
        return viewer

    def viewer_count(self, camera: str | None = None) -> int:
        """Viewers of ``camera`` (default: of every camera), raw and H.264."""
        names = [camera] if camera is not None else list(self._viewers)
        return sum(
            len(self._viewers.get(n, ())) + (self._h264[n].viewer_count if n in self._h264 else 0)
            for n in names
        )

    def _remove(self, viewer: Viewer) -> None:
        with contextlib.suppress(ValueError):
            self._viewers.get(viewer.camera, []).remove(viewer)


@dataclass(slots=True)
class LiveSession:
    """One viewer's WebRTC session; ``ended`` is set once it is over."""

    session_id: str
    owner_key_id: str
    camera: str
    via: str  # "owner" (a signed offer) or "link" (the browser page)
    viewer: Viewer | PacketViewer | None = None  # set once the offer is answered
    peer: Any = field(repr=False, default=None)  # the RTCPeerConnection
    feed_secret: str = field(repr=False, default_factory=lambda: secrets.token_urlsafe(24))
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str | None = None


# Starts WebRTC for a viewer of a camera: (offer SDP, relay, camera, on_closed) ->
# (peer connection, answer SDP, the relay viewer it plays).
Answerer = Callable[
    [str, FrameRelay, str, Callable[[], None]],
    Awaitable[tuple[Any, str, Viewer | PacketViewer]],
]
# Records an audit entry off the loop (the API's write queue): (kind, fields) -> None.
AuditWriter = Callable[[str, dict[str, Any]], Awaitable[None]]
# Publishes an event on the bus: (kind, fields) -> None.
Publisher = Callable[[str, dict[str, Any]], None]


class LiveSessions:
    """Starts, tracks and ends live sessions (call everything on the event loop)."""

    def __init__(
        self,
        relay: FrameRelay,
        *,
        answer: Answerer,
        audit: AuditWriter,
        publish: Publisher,
        config: LiveConfig | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``sleep`` times the session maximum (injected so tests can end it by hand)."""
        self.relay = relay
        self._sleep = sleep
        self.config = config or LiveConfig()
        self._answer = answer
        self._audit = audit
        self._publish = publish
        self._sessions: dict[str, LiveSession] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._starting = 0

    @property
    def sessions(self) -> tuple[LiveSession, ...]:
        return tuple(self._sessions.values())

    def by_feed_secret(self, secret: str) -> LiveSession | None:
        for session in self._sessions.values():
            if secrets.compare_digest(session.feed_secret, secret):
                return session
        return None

    async def start(
        self, *, owner_key_id: str, camera: str, offer_sdp: str, via: str
    ) -> tuple[LiveSession, str]:
        """Answer a viewer's SDP offer; returns the session and the answer SDP."""
        if len(self._sessions) + self._starting >= self.config.max_viewers:
            raise Conflict(
                f"{self.config.max_viewers} viewers are already watching; try again when one "
                "hangs up",
                code="busy",
            )
        self.relay.h264(camera)  # refuses an unknown camera before any WebRTC work
        session = LiveSession(secrets.token_hex(8), owner_key_id, camera, via)
        self._starting += 1
        try:
            peer, answer_sdp, viewer = await asyncio.wait_for(
                self._answer(
                    offer_sdp,
                    self.relay,
                    camera,
                    lambda: self._spawn(self.end(session, "hangup")),
                ),
                self.config.answer_timeout_s,
            )
        finally:
            self._starting -= 1
        session.peer, session.viewer = peer, viewer
        self._sessions[session.session_id] = session
        self._spawn(self._expire(session))
        fields = {
            "session_id": session.session_id,
            "camera": camera,
            "owner_key_id": owner_key_id,
            "via": via,
            # shared_h264: passthrough or one encode for all; per_viewer: aiortc encodes (VP8)
            "encoding": "shared_h264" if isinstance(viewer, PacketViewer) else "per_viewer",
        }
        logger.info(
            "live.started session_id=%s camera=%s owner=%s via=%s",
            session.session_id,
            camera,
            owner_key_id,
            via,
        )
        await self._audit("live.started", fields)
        self._publish("live.started", fields)
        return session, answer_sdp

    async def end(self, session: LiveSession, reason: str) -> None:
        """End a session once (later calls do nothing): close its peer, audit, publish."""
        if session.end_reason is not None:
            return
        session.end_reason = reason
        if session.viewer is not None:
            session.viewer.close()
        if session.peer is not None:
            await session.peer.close()
        fields = {
            "session_id": session.session_id,
            "camera": session.camera,
            "owner_key_id": session.owner_key_id,
            "reason": reason,
            "skipped_frames": session.viewer.skipped if session.viewer is not None else 0,
        }
        logger.info("live.ended session_id=%s reason=%s", session.session_id, reason)
        try:
            await self._audit("live.ended", fields)
            self._publish("live.ended", fields)
        finally:
            self._sessions.pop(session.session_id, None)
            session.ended.set()

    async def end_owner(self, owner_key_id: str) -> int:
        """End every session of an owner who was removed; returns how many."""
        mine = [s for s in self._sessions.values() if s.owner_key_id == owner_key_id]
        for session in mine:
            await self.end(session, "owner_removed")
        return len(mine)

    async def close(self) -> None:
        """End every session (shutdown), then wait for the timers and hang-up handlers."""
        for session in list(self._sessions.values()):
            await self.end(session, "shutdown")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _expire(self, session: LiveSession) -> None:
        timer = asyncio.ensure_future(self._sleep(self.config.max_session_s))
        ended = asyncio.ensure_future(session.ended.wait())
        try:
            await asyncio.wait({timer, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            ended.cancel()
        if not session.ended.is_set():
            await self.end(session, "max_duration")

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
