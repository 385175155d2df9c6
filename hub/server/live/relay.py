"""Live view: one relay of the running pipelines' frames, and the WebRTC sessions that watch it.

:class:`FrameRelay` is fed by each camera pipeline's ``on_capture`` hook as each frame arrives
from the camera, before motion detection and the recording encode see it (a viewer's picture
does not wait for them), so a viewer never opens the camera again: however many watch, the camera is captured once, and each codec is encoded
once (H.264 passed through when the camera has it). The camera's microphone is read once and
encoded to Opus once, while anyone listens. Each viewer has a short queue that is dropped when
it stalls, so a stalled viewer only skips pictures (or sound); the relay never waits and never
slows recording.

:class:`LiveSessions` starts and ends sessions: at most ``max_viewers`` at once, each ended on
hang-up, when its owner is removed, after ``max_session_s``, or at shutdown. ``live.started`` and
``live.ended`` go to the audit log and the event bus.

Talking back: an offer that sends audio claims the camera's speaker floor (``hub.server.speakers``)
as ``owner <key id>`` before it is answered, so a second talker is refused naming the holder; the
owner's sound, decoded once, plays through :meth:`Speakers.play` until their track ends, the
session does, or their sound stops coming (``TALK_SILENCE_S``: a phone that vanished gives the
speaker back within seconds, not when ICE consent expires). ``talk.started`` and ``talk.ended`` go to the audit log and the event bus. A session
started with ``press_to_talk`` (the live page's) claims nothing at the answer: its owner takes the
speaker per press of a button instead (``hub.server.live.press_talk``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hardware import AudioChunk, AudioSource, Frame, SpeakerError, SpeakerFloor
from hub.server.live.audio import AudioFeed
from hub.server.live.feed import CODECS, PacketFeed, PacketViewer
from hub.server.live.press_talk import TALK_FIRST_SOUND_S, TALK_SILENCE_S, PressToTalk
from hub.server.speakers import SpeakerClaim, Speakers
from hub.wire.errors import Conflict, NotFound

__all__ = [
    "Answered",
    "AudioFeed",
    "FrameRelay",
    "LiveConfig",
    "LiveSession",
    "LiveSessions",
    "PacketFeed",
    "PacketViewer",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """Limits of live view."""

    max_viewers: int = 4
    max_session_s: float = 600.0
    # How long an answer may take (ICE gathering on the LAN is quick; this bounds a stuck one).
    answer_timeout_s: float = 20.0
    # A talk whose sound stops this long gives the speaker back (``press_talk.TALK_SILENCE_S``).
    talk_silence_s: float = TALK_SILENCE_S

    def __post_init__(self) -> None:
        if self.max_viewers < 1:
            raise ValueError(f"max_viewers must be >= 1, got {self.max_viewers}")
        if self.max_session_s <= 0:
            raise ValueError(f"max_session_s must be > 0, got {self.max_session_s}")
        if self.talk_silence_s <= 0:
            raise ValueError(f"talk_silence_s must be > 0, got {self.talk_silence_s}")


class FrameRelay:
    """Fans the frames of each running pipeline out to its viewers (everything on the loop):
    each frame goes to the camera's per-codec feeds (``hub.server.live.feed``: H.264 and VP8, each
    encoded once however many watch), and the camera's microphone, if any, to one Opus feed
    (``hub.server.live.audio``)."""

    def __init__(self) -> None:
        self._feeds: dict[str, dict[str, PacketFeed]] = {}
        self._audio: dict[str, AudioFeed] = {}
        self.frames_in: dict[str, int] = {}

    def add_camera(
        self,
        camera: str,
        *,
        extradata: bytes | None = None,
        microphone: AudioSource | None = None,
        floor: SpeakerFloor | None = None,
    ) -> Callable[[Frame], None]:
        """Register a camera (``extradata``: its H.264 parameter sets, if any; ``microphone``:
        its sound, if any, ducked while ``floor``, its speaker's, is held); returns the hook to
        pass as the pipeline's ``on_capture``."""
        self._feeds.setdefault(
            camera, {codec: PacketFeed(camera, codec, extradata=extradata) for codec in CODECS}
        )
        if microphone is not None:
            self._audio.setdefault(camera, AudioFeed(camera, microphone, floor=floor))
        self.frames_in.setdefault(camera, 0)
        return lambda frame: self.push(camera, frame)

    def feed(self, camera: str, codec: str) -> PacketFeed:
        """The camera's video in ``codec`` (``"h264"``: passthrough or one shared encode;
        ``"vp8"``: one shared encode)."""
        if camera not in self._feeds:
            raise NotFound(f"no camera named {camera[:64]!r}; GET /cameras lists them")
        return self._feeds[camera][codec]

    def audio(self, camera: str) -> AudioFeed | None:
        """The camera's sound as Opus, or None when it has no microphone."""
        return self._audio.get(camera)

    @property
    def cameras(self) -> tuple[str, ...]:
        """The registered cameras' names, in the order they were added."""
        return tuple(self._feeds)

    def push(self, camera: str, frame: Frame) -> None:
        """Hand one captured frame to every feed of ``camera`` (must run on the event loop)."""
        self.frames_in[camera] = self.frames_in.get(camera, 0) + 1
        for feed in self._feeds.get(camera, {}).values():
            feed.push(frame)

    def viewer_count(self, camera: str | None = None) -> int:
        """Video viewers of ``camera`` (default: of every camera), in every codec."""
        names = [camera] if camera is not None else list(self._feeds)
        return sum(f.viewer_count for n in names for f in self._feeds.get(n, {}).values())


@dataclass(slots=True)
class LiveSession:
    """One viewer's WebRTC session; ``ended`` is set once it is over."""

    session_id: str
    owner_key_id: str
    camera: str
    via: str  # "owner" (a signed offer) or "link" (the browser page)
    viewer: PacketViewer | None = None  # set once the offer is answered
    listener: PacketViewer | None = None  # the sound, when the camera and the viewer have it
    peer: Any = field(repr=False, default=None)  # the RTCPeerConnection
    feed_secret: str = field(repr=False, default_factory=lambda: secrets.token_urlsafe(24))
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str | None = None
    talk: SpeakerClaim | None = None  # the speaker's floor, while the owner talks back
    talk_task: asyncio.Task[None] | None = field(repr=False, default=None)
    talk_seconds: float = 0.0  # of the owner's sound received and played
    talk_sound: Any = field(repr=False, default=None)  # Answered.talk, while the owner talks
    talk_end_reason: str | None = None
    talk_silent: bool = False  # the owner's sound stopped coming (talk_silence_s)
    # Hold-to-talk (the live page): the floor is taken per press instead (``press_talk``).
    press_talk: PressToTalk | None = field(repr=False, default=None)


@dataclass(frozen=True, slots=True)
class Answered:
    """A viewer's offer, answered: the peer connection, the answer SDP, the feeds it plays, and
    how its video is encoded (``shared_h264``, ``passthrough_h264`` or ``shared_vp8``)."""

    peer: Any = field(repr=False)
    sdp: str = field(repr=False)
    viewer: PacketViewer
    listener: PacketViewer | None
    encoding: str
    # The owner's sound, decoded, when the offer sends audio (it talks back); ends with the track.
    # Its ``dropped`` attribute, if any, counts chunks lost because the speaker fell behind.
    talk: AsyncIterable[AudioChunk] | None = field(repr=False, default=None)


# Starts WebRTC for a viewer of a camera: (offer SDP, relay, camera, on_closed, claim_talk) ->
# Answered. ``claim_talk`` is called before answering an offer that sends audio; it raises (a 409
# naming who holds the speaker, or no speaker) to refuse the offer.
Answerer = Callable[
    [str, FrameRelay, str, Callable[[], None], Callable[[], None]], Awaitable[Answered]
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
        speakers: Speakers | None = None,
    ) -> None:
        """``sleep`` times the session maximum (injected so tests can end it by hand);
        ``speakers``: where owners talking back are played (none: talk offers are refused)."""
        self.relay = relay
        self.speakers = speakers if speakers is not None else Speakers()
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
        """The sessions answered and not yet ended."""
        return tuple(self._sessions.values())

    def by_feed_secret(self, secret: str) -> LiveSession | None:
        """The running session whose feed secret is ``secret`` (constant-time compare), or None."""
        for session in self._sessions.values():
            if secrets.compare_digest(session.feed_secret, secret):
                return session
        return None

    async def start(
        self,
        *,
        owner_key_id: str,
        camera: str,
        offer_sdp: str,
        via: str,
        press_to_talk: bool = False,
    ) -> tuple[LiveSession, str]:
        """Answer a viewer's SDP offer; returns the session and the answer SDP. With
        ``press_to_talk`` an offer that sends audio takes the speaker only while a button is
        held (``session.press_talk``), not from the answer on."""
        if len(self._sessions) + self._starting >= self.config.max_viewers:
            raise Conflict(
                f"{self.config.max_viewers} viewers are already watching; try again when one "
                "hangs up",
                code="busy",
            )
        self.relay.feed(camera, "h264")  # refuses an unknown camera before any WebRTC work
        session = LiveSession(secrets.token_hex(8), owner_key_id, camera, via)
        claims: list[SpeakerClaim] = []

        def claim_talk() -> None:
            if not press_to_talk:  # hold-to-talk claims the floor at each press instead
                claims.append(self.speakers.claim(camera, f"owner {owner_key_id}"))

        self._starting += 1
        try:
            answered = await asyncio.wait_for(
                self._answer(
                    offer_sdp,
                    self.relay,
                    camera,
                    lambda: self._spawn(self.end(session, "hangup")),
                    claim_talk,
                ),
                self.config.answer_timeout_s,
            )
        except BaseException:
            for claim in claims:
                claim.release()
            raise
        finally:
            self._starting -= 1
        session.peer, session.viewer = answered.peer, answered.viewer
        session.listener = answered.listener
        if answered.talk is not None and claims:
            session.talk = claims[0]
        if answered.talk is not None and press_to_talk:
            session.press_talk = PressToTalk(
                session_id=session.session_id,
                camera=camera,
                owner_key_id=owner_key_id,
                via=via,
                sound=answered.talk,
                speakers=self.speakers,
                record=self._record_talk,
                silence_s=self.config.talk_silence_s,
            )
        self._sessions[session.session_id] = session
        self._spawn(self._expire(session))
        fields = {
            "session_id": session.session_id,
            "camera": camera,
            "owner_key_id": owner_key_id,
            "via": via,
            "encoding": answered.encoding,
            "audio": answered.listener is not None,
            "talk": session.talk is not None,
        }
        logger.info(
            "live.started session_id=%s camera=%s owner=%s via=%s encoding=%s audio=%s talk=%s",
            session.session_id,
            camera,
            owner_key_id,
            via,
            answered.encoding,
            answered.listener is not None,
            session.talk is not None,
        )
        await self._audit("live.started", fields)
        self._publish("live.started", fields)
        if session.talk is not None and answered.talk is not None:
            await self._start_talk(session, answered.talk)
        return session, answered.sdp

    async def end(self, session: LiveSession, reason: str) -> None:
        """End a session once (later calls do nothing): close its peer, audit, publish."""
        if session.end_reason is not None:
            return
        session.end_reason = reason
        for feed in (session.viewer, session.listener):
            if feed is not None:
                feed.close()
        if session.talk_task is not None:
            if session.talk_end_reason is None:  # still playing: stop it (else let it audit)
                session.talk_task.cancel()
            (outcome,) = await asyncio.gather(session.talk_task, return_exceptions=True)
            if isinstance(outcome, Exception):
                logger.error(
                    "talk.failed session_id=%s error=%s", session.session_id, repr(outcome)[:200]
                )
        await self._end_talk(session, reason)
        if session.press_talk is not None:
            await session.press_talk.close(reason)
        if session.peer is not None:
            await session.peer.close()
        fields = {
            "session_id": session.session_id,
            "camera": session.camera,
            "owner_key_id": session.owner_key_id,
            "reason": reason,
            "skipped_frames": session.viewer.skipped if session.viewer is not None else 0,
            "skipped_audio": session.listener.skipped if session.listener is not None else 0,
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

    async def _start_talk(self, session: LiveSession, sound: AsyncIterable[AudioChunk]) -> None:
        """Audit and announce the owner's talk, then play their sound until it ends."""
        assert session.talk is not None
        fields = {
            "session_id": session.session_id,
            "camera": session.camera,
            "owner_key_id": session.owner_key_id,
            "via": session.via,
        }
        logger.info(
            "talk.started session_id=%s camera=%s owner=%s",
            session.session_id,
            session.camera,
            session.owner_key_id,
        )
        await self._audit("talk.started", fields)
        self._publish("talk.started", fields)
        session.talk_sound = sound
        task = asyncio.ensure_future(self._talk(session, sound))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        session.talk_task = task

    async def _talk(self, session: LiveSession, sound: AsyncIterable[AudioChunk]) -> None:
        assert session.talk is not None

        async def counted() -> AsyncIterator[AudioChunk]:
            async for chunk in sound:
                session.talk_seconds += chunk.samples.shape[0] / chunk.sample_rate
                yield chunk

        owner_sound = self._until_silent(session, counted())
        reason = "stopped"  # the owner's track ended: they stopped talking
        try:
            await self.speakers.play(session.camera, owner_sound, session.talk.holder)
            if session.talk_silent:
                reason = "no_sound"  # the phone went quiet mid-talk: it is gone, or muted
        except SpeakerError as exc:
            logger.error(
                "talk.speaker_failed session_id=%s camera=%s error=%s",
                session.session_id,
                session.camera,
                exc,
            )
            reason = "speaker_failed"
            session.talk.release()  # the floor is free; the rest of the sound is dropped
            async for _ in owner_sound:  # aiortc queues what is not taken
                pass
        await self._end_talk(session, reason)

    async def _until_silent(
        self, session: LiveSession, sound: AsyncIterable[AudioChunk]
    ) -> AsyncIterator[AudioChunk]:
        """``sound`` until it ends, or until none has come for ``talk_silence_s`` (the first
        within ``TALK_FIRST_SOUND_S``): then ``session.talk_silent`` is set. (``OwnerSound``,
        closed by the timeout, goes on reading and dropping what a phone that comes back sends,
        so nothing piles up.)"""
        chunks = aiter(sound)
        limit = max(TALK_FIRST_SOUND_S, self.config.talk_silence_s)
        while True:
            try:
                async with asyncio.timeout(limit):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                session.talk_silent = True
                return
            limit = self.config.talk_silence_s
            yield chunk

    async def _end_talk(self, session: LiveSession, reason: str) -> None:
        """Give the floor back and audit the end of the owner's talk, once."""
        if session.talk is None or session.talk_end_reason is not None:
            return
        session.talk_end_reason = reason
        session.talk.release()
        fields = {
            "session_id": session.session_id,
            "camera": session.camera,
            "owner_key_id": session.owner_key_id,
            "reason": reason,
            "talked_ms": round(session.talk_seconds * 1000),  # the audit log takes no floats
            "dropped_ms": 20 * int(getattr(session.talk_sound, "dropped", 0)),  # 20 ms chunks
        }
        logger.info(
            "talk.ended session_id=%s reason=%s seconds=%.2f",
            session.session_id,
            reason,
            session.talk_seconds,
        )
        await self._audit("talk.ended", fields)
        self._publish("talk.ended", fields)

    async def _record_talk(self, kind: str, fields: dict[str, Any]) -> None:
        await self._audit(kind, fields)
        self._publish(kind, fields)

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
