"""Hold-to-talk for the live page: the speaker's floor is taken while a button is held, not for
the whole session.

The page's offer sends audio from the start (so pressing needs no renegotiation), but between
presses it sends nothing. Its session gets a :class:`PressToTalk` instead of a talk that holds the
floor from the answer on (``hub.server.live.relay``): the owner's sound is read all session and
dropped, except while a press holds the camera's floor (:meth:`Speakers.claim`); then it plays.
A press refused because someone else plays raises :class:`~hub.server.speakers.SpeakerBusy`
naming them. Each press is one talk in the audit log and on the bus (``talk.started``,
``talk.ended``), as an owner's talk from the phone is. Everything runs on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

from hardware import AudioChunk, SpeakerError
from hub.server.speakers import SpeakerClaim, Speakers

__all__ = ["MAX_QUEUED_PRESS_CHUNKS", "TALK_FIRST_SOUND_S", "TALK_SILENCE_S", "PressToTalk"]

logger = logging.getLogger(__name__)

# Half a second of 20 ms chunks waiting for the speaker during a press; past it the oldest go, so
# a page that sends faster than real time never makes the device hold more.
MAX_QUEUED_PRESS_CHUNKS = 25

# A talk whose sound stops gives the speaker back: a phone that vanished (its network went, its
# app was killed) would otherwise hold the floor until ICE consent expires, about 30 s later. Its
# first sound may take longer (ICE and DTLS set-up, or the browser asking for the microphone).
TALK_FIRST_SOUND_S = 15.0
TALK_SILENCE_S = 2.0

# Records a talk entry in the audit log and on the bus: (kind, fields) -> None.
TalkRecorder = Callable[[str, dict[str, Any]], Awaitable[None]]


class PressToTalk:
    """The talk of one live session whose owner holds a button to speak: :meth:`press`,
    :meth:`release`, and :meth:`close` when the session ends."""

    def __init__(
        self,
        *,
        session_id: str,
        camera: str,
        owner_key_id: str,
        via: str,
        sound: AsyncIterable[AudioChunk],
        speakers: Speakers,
        record: TalkRecorder,
        silence_s: float = TALK_SILENCE_S,
    ) -> None:
        """``silence_s``: a press whose sound stops this long ends (the page is gone)."""
        self.session_id = session_id
        self.camera = camera
        self.owner_key_id = owner_key_id
        self.via = via
        self.presses = 0
        self.dropped_chunks = 0  # arrived between presses, or past the queue's cap
        self._speakers = speakers
        self._record = record
        self._silence_s = silence_s
        self._queue: collections.deque[AudioChunk] | None = None  # while pressed
        self._ready = asyncio.Event()
        self._playing: asyncio.Task[None] | None = None
        self._end_reason = "stopped"
        self._press_s = 0.0  # of sound played in the current press
        self._press_dropped = 0  # chunks of the current press lost past the queue's cap
        self._reader = asyncio.ensure_future(self._read(sound))

    @property
    def holder(self) -> str:
        """Who the floor is held as while this owner talks."""
        return f"owner {self.owner_key_id}"

    @property
    def pressed(self) -> bool:
        """Whether the button is held (the owner's sound goes to the speaker)."""
        return self._queue is not None

    @property
    def available(self) -> bool:
        """Whether the camera has a speaker to talk on."""
        return self._speakers.sink(self.camera) is not None

    async def press(self) -> None:
        """Start playing the owner's sound; raises ``NoSpeaker`` or ``SpeakerBusy`` (naming who
        plays) without playing anything. A press while pressed does nothing."""
        if self._queue is not None:
            return
        if self._playing is not None:  # the last press's tail is still playing: let it finish
            await asyncio.shield(self._playing)
            if self._queue is not None:  # another press came in meanwhile
                return
        claim = self._speakers.claim(self.camera, self.holder)
        self.presses += 1
        self._queue = collections.deque()
        self._end_reason = "stopped"
        self._press_s = 0.0
        self._press_dropped = 0
        self._playing = asyncio.ensure_future(self._play(claim, self._queue))
        await self._record("talk.started", self._fields())

    async def release(self) -> None:
        """Stop taking the owner's sound: what is already queued plays out, then the floor is
        given back and the talk is audited as ended (in the background)."""
        if self._queue is None:
            return
        self._queue = None
        self._ready.set()

    async def close(self, reason: str) -> None:
        """End the session's talk (the session is ending): stop any press at once, and stop
        reading the owner's sound."""
        self._queue = None
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        if self._playing is not None and not self._playing.done():
            self._playing.cancel()
            self._end_reason = reason
            with contextlib.suppress(asyncio.CancelledError):
                await self._playing

    async def _read(self, sound: AsyncIterable[AudioChunk]) -> None:
        """Read the owner's sound all session (aiortc queues what is not taken), queueing it
        for the speaker only while pressed."""
        async for chunk in sound:
            queue = self._queue
            if queue is None:
                self.dropped_chunks += 1
                continue
            if len(queue) >= MAX_QUEUED_PRESS_CHUNKS:
                queue.popleft()
                self.dropped_chunks += 1
                self._press_dropped += 1
            queue.append(chunk)
            self._ready.set()
        self._queue = None  # the owner's track ended: any press ends with it
        self._ready.set()

    async def _chunks(self, queue: collections.deque[AudioChunk]) -> AsyncIterator[AudioChunk]:
        limit = max(TALK_FIRST_SOUND_S, self._silence_s)
        while True:
            if queue:
                chunk = queue.popleft()
                self._press_s += chunk.samples.shape[0] / chunk.sample_rate
                limit = self._silence_s
                yield chunk
                continue
            if self._queue is not queue:  # released (or a new press has its own queue)
                return
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), limit)
            except TimeoutError:  # held, but nothing arrives: the page is gone
                self._end_reason = "no_sound"
                if self._queue is queue:
                    self._queue = None
                return

    async def _play(self, claim: SpeakerClaim, queue: collections.deque[AudioChunk]) -> None:
        try:
            await self._speakers.play(self.camera, self._chunks(queue), claim.holder)
        except SpeakerError as exc:
            logger.error(
                "talk.speaker_failed session_id=%s camera=%s error=%s",
                self.session_id,
                self.camera,
                exc,
            )
            self._end_reason = "speaker_failed"
            if self._queue is queue:
                self._queue = None
        finally:
            claim.release()
            self._playing = None if self._playing is asyncio.current_task() else self._playing
            fields = {
                **self._fields(),
                "reason": self._end_reason,
                "talked_ms": round(self._press_s * 1000),  # the audit log takes no floats
                "dropped_ms": 20 * self._press_dropped,  # 20 ms chunks
            }
            logger.info(
                "talk.ended session_id=%s reason=%s seconds=%.2f",
                self.session_id,
                self._end_reason,
                self._press_s,
            )
            await asyncio.shield(self._record("talk.ended", fields))

    def _fields(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "camera": self.camera,
            "owner_key_id": self.owner_key_id,
            "via": self.via,
        }
