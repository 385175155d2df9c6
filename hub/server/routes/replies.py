"""Quick-reply routes (owner-signed): store, list, remove and play short messages on a camera's
speaker (``hub.server.replies``).

- ``GET /replies``: ``{"replies": [Reply…]}``.
- ``PUT /replies/{name}``: the body is a WAV (PCM) or Ogg Opus file of at most
  ``MAX_REPLY_BYTES`` (a larger declared length is answered 413 before it is read) that plays for
  at most ``MAX_REPLY_S``; 201 with the reply. Audited ``reply.added``; event ``reply.added``.
- ``DELETE /replies/{name}``: the removed reply. Audited and published ``reply.removed``.
- ``POST /replies/{name}/play``: ``{"camera"?}`` in (default: the first camera with a speaker);
  answers once the reply has played, ``{"name", "camera", "duration"}``. Refused at once with 409
  ``speaker_busy`` naming who holds the speaker (an owner talking, another reply, the chime).
  Audited and published ``reply.played`` (with ``complete`` false if the speaker failed midway).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from hardware import AudioChunk, FloorTaken, SpeakerError
from hub.server import appkeys
from hub.server.body import max_body, read_body
from hub.server.replies import MAX_REPLY_BYTES, MAX_REPLY_S, check_name
from hub.server.routes._auth import require_owner
from hub.server.routes._params import parse_json_object
from hub.server.sound import Sound, decode_sound
from hub.wire.errors import BadRequest, Conflict, HubError, NotFound

__all__ = ["SpeakerFailed", "add_routes"]

logger = logging.getLogger(__name__)


class SpeakerFailed(HubError):
    """The camera's speaker stopped working while it played: check the device's log."""

    status = 503
    code = "speaker_failed"


def add_routes(app: web.Application) -> None:
    """Add the quick-reply routes."""
    app.router.add_routes(
        [
            web.get("/replies", list_replies),
            web.put("/replies/{name}", add_reply),
            web.delete("/replies/{name}", remove_reply),
            web.post("/replies/{name}/play", play_reply),
        ]
    )


async def list_replies(request: web.Request) -> web.Response:
    await require_owner(request)
    book = request.app[appkeys.REPLIES]
    replies = await request.app[appkeys.WORKER].run(book.list)
    return web.json_response({"replies": [reply.to_json() for reply in replies]})


@max_body(MAX_REPLY_BYTES)
async def add_reply(request: web.Request) -> web.Response:
    owner = await require_owner(request)
    name = check_name(request.match_info["name"])
    app = request.app
    deps, book = app[appkeys.DEPS], app[appkeys.REPLIES]
    data = await read_body(request)
    if not data:
        raise BadRequest("the body must be the quick reply's sound file (WAV or Ogg Opus)")
    what = f"the quick reply {name!r}"
    sound = await asyncio.to_thread(decode_sound, data, max_s=MAX_REPLY_S, what=what)
    digest = hashlib.sha256(data).hexdigest()
    now_s = int(deps.clock())

    def store() -> Any:
        reply = book.add(
            name, sound, size=len(data), sha256=digest, owner_key_id=owner.key_id, now_s=now_s
        )
        deps.audit.append(
            "reply.added",
            name=name,
            owner_key_id=owner.key_id,
            duration_ms=round(reply.duration_s * 1000),
            bytes=len(data),
            sha256=digest,
        )
        return reply

    reply = await app[appkeys.WORKER].run(store)
    app[appkeys.BUS].publish(
        "reply.added", name=name, owner_key_id=owner.key_id, duration=round(reply.duration_s, 3)
    )
    return web.json_response(reply.to_json(), status=201)


async def remove_reply(request: web.Request) -> web.Response:
    owner = await require_owner(request)
    name = check_name(request.match_info["name"])
    app = request.app
    deps, book = app[appkeys.DEPS], app[appkeys.REPLIES]

    def remove() -> Any:
        reply = book.remove(name)
        deps.audit.append("reply.removed", name=name, owner_key_id=owner.key_id)
        return reply

    reply = await app[appkeys.WORKER].run(remove)
    app[appkeys.BUS].publish("reply.removed", name=name, owner_key_id=owner.key_id)
    return web.json_response(reply.to_json())


async def play_reply(request: web.Request) -> web.Response:
    owner = await require_owner(request)
    name = check_name(request.match_info["name"])
    app = request.app
    deps, book = app[appkeys.DEPS], app[appkeys.REPLIES]
    data = await read_body(request)
    camera = _speaker_camera(app, parse_json_object(data).get("camera") if data else None)
    sound: Sound = await app[appkeys.WORKER].run(book.sound, name)
    speakers = app[appkeys.SPEAKERS]
    holder = f"quick reply {name!r} (owner {owner.key_id[:8]})"
    played = _Counted(sound)
    complete = False
    try:
        await speakers.play(camera, played.chunks(), holder)
        complete = True
    except FloorTaken as exc:
        logger.info("replies.refused name=%s camera=%s holder=%s", name, camera, exc.holder)
        raise Conflict(
            f"the speaker of camera {camera!r} is in use by {exc.holder}; try again when they "
            "finish",
            code="speaker_busy",
        ) from None
    except SpeakerError as exc:
        logger.error("replies.speaker_failed name=%s camera=%s error=%s", name, camera, exc)
        raise SpeakerFailed(
            f"the speaker of camera {camera!r} failed while playing {name!r}: {exc}"
        ) from None
    finally:
        if played.started:  # a use, even one cut short, is on the record
            fields = {
                "name": name,
                "camera": camera,
                "owner_key_id": owner.key_id,
                "played_ms": round(played.seconds * 1000),
                "complete": complete,
            }
            await app[appkeys.WORKER].run(lambda: deps.audit.append("reply.played", **fields))
            app[appkeys.BUS].publish("reply.played", **fields)
    logger.info("replies.played name=%s camera=%s owner=%s", name, camera, owner.key_id)
    return web.json_response(
        {"name": name, "camera": camera, "duration": round(sound.duration_s, 3)}
    )


class _Counted:
    """A sound's chunks, counting what the speaker took."""

    def __init__(self, sound: Sound) -> None:
        self._sound = sound
        self.started = False
        self.seconds = 0.0

    def chunks(self) -> Iterator[AudioChunk]:
        for chunk in self._sound.chunks():
            self.started = True
            yield chunk
            self.seconds += len(chunk.samples) / chunk.sample_rate


def _speaker_camera(app: web.Application, name: Any) -> str:
    """The camera named ``name`` (default: the first with a speaker), which must have one."""
    speakers = app[appkeys.SPEAKERS]
    cameras = list(app[appkeys.DEPS].cameras)
    cameras += [camera for camera in speakers.cameras if camera not in cameras]
    with_speaker = [camera for camera in cameras if speakers.sink(camera) is not None]
    if name is None:
        if not with_speaker:
            raise Conflict(
                "no camera of this doorbell has a speaker to play a quick reply on; name one "
                "under [speakers] in the config (sim, wav:PATH or alsa:DEVICE)",
                code="no_speaker",
            )
        return with_speaker[0]
    if not isinstance(name, str) or name not in cameras:
        shown = name[:64] if isinstance(name, str) else type(name).__name__
        raise NotFound(f"no camera named {shown!r}; GET /cameras lists them")
    if name not in with_speaker:
        others = ", ".join(with_speaker) or "none"
        raise Conflict(
            f"camera {name!r} has no speaker, so it cannot play a quick reply; cameras with "
            f"one: {others}",
            code="no_speaker",
        )
    return name
