"""Quick replies: short messages owners store on the doorbell and play to a visitor when they
cannot talk ("We're out, please leave it by the door").

Each reply lives in the data directory's ``replies/`` folder as two files: ``NAME.wav``, the sound
as the speaker plays it (decoded once at upload: mono 16-bit at 48 kHz), and ``NAME.json``, what
was uploaded (format, rate, channels, size, SHA-256), when and by which owner. Both are written
atomically (temp file, fsync, rename), the sound first, so a reply is listed only once complete.

They are stored in the clear, unlike footage: the doorbell must play them on its own, to whoever
is at the door, so it would hold the key to any encryption next to them; and what they say is
meant for strangers' ears. The folder is private to the device's user like the rest of the data
directory. Every method blocks on the file system: call them on the API's worker.
"""

from __future__ import annotations

import json
import logging
import os
import re
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hub.server.sound import Sound, SoundError, wav_bytes
from hub.wire.errors import BadRequest, Conflict, NotFound

__all__ = [
    "MAX_REPLIES",
    "MAX_REPLY_BYTES",
    "MAX_REPLY_S",
    "Reply",
    "ReplyBook",
    "check_name",
]

logger = logging.getLogger(__name__)

MAX_REPLY_S = 15.0  # a quick reply is a sentence or two, not a recording
# 15 s of 48 kHz 16-bit stereo WAV is 2.88 MB; Opus of the same is some 60 KB.
MAX_REPLY_BYTES = 3 * 1024 * 1024
MAX_REPLIES = 16  # replies stored at most: each is at most 1.44 MB decoded
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_TEMP_PREFIX = ".tmp-"


def check_name(name: str) -> str:
    """``name`` if it can name a quick reply, else BadRequest saying what a name may be."""
    if not _NAME.fullmatch(name):
        raise BadRequest(
            "a quick reply's name must be 1 to 32 lowercase letters, digits, '-' or '_', "
            f"starting with a letter or digit (like away or leave-parcel), got {name[:40]!r}"
        )
    return name


@dataclass(frozen=True, slots=True)
class Reply:
    """A stored quick reply: how long it plays and what was uploaded, when and by whom."""

    name: str
    duration_s: float
    added_s: int
    owner_key_id: str
    source_format: str  # wav or ogg
    source_codec: str  # pcm_s16le, opus, ...
    source_rate: int  # Hz, as uploaded (played at 48 kHz)
    source_channels: int  # as uploaded (played mono)
    size: int  # bytes uploaded
    sha256: str  # of the bytes uploaded

    def to_json(self) -> dict[str, Any]:
        """The reply as the API lists it."""
        return {
            "name": self.name,
            "duration": round(self.duration_s, 3),
            "added": self.added_s,
            "owner_key_id": self.owner_key_id,
            "format": self.source_format,
            "codec": self.source_codec,
            "sample_rate": self.source_rate,
            "channels": self.source_channels,
            "bytes": self.size,
            "sha256": self.sha256,
        }

    @classmethod
    def from_json(cls, value: Any) -> Reply:
        """A reply's stored record; ValueError if it is not one."""
        if not isinstance(value, dict):
            raise ValueError("a reply record must be a JSON object")
        try:
            return cls(
                name=check_name(str(value["name"])),
                duration_s=float(value["duration"]),
                added_s=int(value["added"]),
                owner_key_id=str(value["owner_key_id"]),
                source_format=str(value["format"]),
                source_codec=str(value["codec"]),
                source_rate=int(value["sample_rate"]),
                source_channels=int(value["channels"]),
                size=int(value["bytes"]),
                sha256=str(value["sha256"]),
            )
        except (KeyError, TypeError, BadRequest) as exc:
            raise ValueError(f"a reply record lacks or mangles a field: {exc}") from None


class ReplyBook:
    """The quick replies in one folder (``DATA/replies``), at most ``max_replies`` of them."""

    def __init__(self, directory: Path, *, max_replies: int = MAX_REPLIES) -> None:
        if max_replies < 1:
            raise ValueError(f"max_replies must be >= 1, got {max_replies}")
        self.directory = directory
        self._max = max_replies
        directory.mkdir(mode=0o700, exist_ok=True)
        for leftover in directory.glob(f"{_TEMP_PREFIX}*"):  # a write a crash interrupted
            leftover.unlink()

    def list(self) -> list[Reply]:
        """Every stored reply, by name; a damaged record is logged and left out."""
        replies = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                replies.append(self._read(path))
            except (OSError, ValueError) as exc:
                logger.error("replies.unreadable file=%s error=%s", path.name, exc)
        return replies

    def get(self, name: str) -> Reply:
        """The reply called ``name``; NotFound if there is none."""
        path = self._record(name)
        try:
            return self._read(path)
        except FileNotFoundError:
            raise NotFound(
                f"no quick reply named {name!r}; GET /replies lists them "
                "(doorward owner replies list)"
            ) from None
        except (OSError, ValueError) as exc:
            logger.error("replies.unreadable file=%s error=%s", path.name, exc)
            raise NotFound(
                f"the quick reply {name!r} is damaged; remove it and upload it again"
            ) from None

    def add(
        self,
        name: str,
        sound: Sound,
        *,
        size: int,
        sha256: str,
        owner_key_id: str,
        now_s: int,
    ) -> Reply:
        """Store ``sound`` as the reply ``name``; Conflict (``reply_exists``) if the name is
        taken, (``too_many_replies``) if the folder is full."""
        check_name(name)
        if self._record(name).exists():
            raise Conflict(
                f"a quick reply named {name!r} exists; remove it first "
                f"(doorward owner replies remove {name}) or choose another name",
                code="reply_exists",
            )
        stored = len(list(self.directory.glob("*.json")))
        if stored >= self._max:
            raise Conflict(
                f"the doorbell holds {stored} quick replies, the most it keeps; remove one first",
                code="too_many_replies",
            )
        reply = Reply(
            name,
            sound.duration_s,
            now_s,
            owner_key_id,
            sound.source_format,
            sound.source_codec,
            sound.source_rate,
            sound.source_channels,
            size,
            sha256,
        )
        _write_atomic(self._sound(name), wav_bytes(sound.samples, sound.sample_rate))
        _write_atomic(self._record(name), json.dumps(reply.to_json(), sort_keys=True).encode())
        logger.info("replies.added name=%s duration_s=%.2f", name, reply.duration_s)
        return reply

    def remove(self, name: str) -> Reply:
        """Delete the reply ``name`` (record first: it is unlisted at once); NotFound if none."""
        reply = self.get(name)
        self._record(name).unlink(missing_ok=True)
        self._sound(name).unlink(missing_ok=True)
        logger.info("replies.removed name=%s", name)
        return reply

    def sound(self, name: str) -> Sound:
        """The stored sound of the reply ``name``; NotFound if there is none."""
        reply = self.get(name)
        try:
            with wave.open(str(self._sound(name)), "rb") as file:
                if file.getnchannels() != 1 or file.getsampwidth() != 2:
                    raise SoundError("not mono 16-bit")
                rate = file.getframerate()
                frames = file.readframes(file.getnframes())
        except (OSError, EOFError, wave.Error, SoundError) as exc:
            logger.error("replies.unreadable file=%s.wav error=%s", name, exc)
            raise NotFound(
                f"the quick reply {name!r} is damaged; remove it and upload it again"
            ) from None
        samples = np.frombuffer(frames, dtype="<i2").astype(np.int16)
        return Sound(
            samples,
            rate,
            reply.source_format,
            reply.source_codec,
            reply.source_rate,
            reply.source_channels,
        )

    def _record(self, name: str) -> Path:
        return self.directory / f"{check_name(name)}.json"

    def _sound(self, name: str) -> Path:
        return self.directory / f"{check_name(name)}.wav"

    def _read(self, path: Path) -> Reply:
        reply = Reply.from_json(json.loads(path.read_bytes()))
        if reply.name != path.stem:
            raise ValueError(f"the record names {reply.name!r}, not {path.stem!r}")
        return reply


def _write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f"{_TEMP_PREFIX}{path.name}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
