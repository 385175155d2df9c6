"""FileCamera: any video file PyAV opens, replayed as a camera; H.264 packets pass through."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from hardware._audio import StreamMicrophone
from hardware._clock import Clock, SystemClock
from hardware._demux import Decoded, StreamReader, open_container
from hardware._frames import EncodedPacket, Frame, StreamInfo
from hardware._worker import Worker

__all__ = ["FileCamera"]

logger = logging.getLogger(__name__)

# Pictures decoded per trip to the worker thread: each trip costs a thread hand-off and an event
# loop wake-up, which at 30 fps is a few per cent of the decode itself. Four 1080p pictures hold
# about 12 MB of decoder buffers.
_BATCH = 4


class FileCamera:
    """Replays a video file (implements CameraSource).

    Frames are decoded for motion detection; for H.264 files each frame also carries the file's
    own packet in Annex B form (MP4/MKV are converted with ``h264_mp4toannexb``), never re-encoded,
    and ``info.codec == "h264"``. Other codecs give frames only. With ``loop`` the file restarts
    at its end, times and packet timestamps continuing. In virtual time frames come as fast as
    they decode, ``wall_s`` counting from ``clock.now()`` at the first frame; with ``realtime``
    each frame waits for its due time. The planes are read-only views of the decoder's pictures.
    A file with a sound track has a ``microphone`` (else None): its sound, decoded only while
    someone listens, stamped on the frames' clock. ``one_thread`` decodes on one thread (a small
    stream, such as a camera's detect substream: less memory than frame threads).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        loop: bool = False,
        realtime: bool = False,
        clock: Clock | None = None,
        name: str | None = None,
        one_thread: bool = False,
    ) -> None:
        self.path = Path(path)
        self._one_thread = one_thread
        self.name = name or self.path.stem
        self.loop = loop
        self.realtime = realtime
        self._clock = clock or SystemClock()
        self._sound = StreamMicrophone()
        self._reader = self._stream_reader(open_container(str(self.path)))
        self.microphone = self._sound if self._reader.has_audio else None
        self._info = self._reader.info()
        self._worker = Worker(self.name)
        self._decoded: Iterator[Decoded] | None = None
        self._ready: list[Decoded] = []  # decoded in the last batch, not yet yielded
        self._index = 0
        self._pass_offset_s = 0.0  # added to pts_s in the current pass through the file
        self._first_pts_s: float | None = None
        self._last_pts_s = 0.0
        self._start_monotonic: float | None = None
        self._start_wall: float | None = None
        self._closed = False
        self._light = False

    @property
    def info(self) -> StreamInfo:
        """Picture size, nominal rate and codec, read from the file when it was opened."""
        return self._info

    def decode_lightly(self) -> None:
        """The pictures only feed motion (the packets are what is recorded): decode no more than
        that needs (see ``StreamReader.decode_lightly``). Call before :meth:`frames`."""
        self._light = True
        self._reader.decode_lightly()

    async def frames(self) -> AsyncIterator[Frame]:
        """Frames from where the last iteration stopped, until the end of the file (or forever)."""
        if self._start_monotonic is None:
            self._start_monotonic = self._clock.monotonic()
            self._start_wall = self._clock.now()
        frame_s = 1 / float(self._info.fps) if self._info.fps else 0.0
        while not self._closed:
            if not self._ready:
                if self._decoded is None:
                    self._decoded = self._reader.read()
                self._ready = await self._worker.run(_next_batch, self._decoded)
                self._ready.reverse()  # popped from the end, oldest first
            if not self._ready:
                if not self.loop or self._index == 0:
                    return
                await self._restart(self._last_pts_s + frame_s)
                continue
            decoded = self._ready.pop()
            if self._first_pts_s is None:
                self._first_pts_s = decoded.pts_s
            pts_s = self._pass_offset_s + decoded.pts_s - self._first_pts_s
            self._last_pts_s = pts_s
            if self.realtime:
                assert self._start_monotonic is not None
                wait_s = self._start_monotonic + pts_s - self._clock.monotonic()
                if wait_s > 0:
                    await self._clock.sleep(wait_s)
                wall_s = self._clock.now()
            else:
                assert self._start_wall is not None
                wall_s = self._start_wall + pts_s
            packet = decoded.packet
            if packet is not None and self._pass_offset_s:
                shift = round(self._pass_offset_s / packet.time_base)
                packet = EncodedPacket(
                    packet.data,
                    packet.pts + shift,
                    packet.dts + shift,
                    packet.time_base,
                    packet.keyframe,
                )
            frame = Frame(
                self._index,
                pts_s,
                wall_s,
                decoded.y,
                decoded.u,
                decoded.v,
                packet=packet,
                new_picture=decoded.new_picture,
            )
            self._index += 1
            yield frame  # the trip to the worker for each batch lets other tasks run

    async def close(self) -> None:
        """Close the file and stop its decoder thread; :meth:`frames` then ends. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._worker.run(self._reader.close)
        self._worker.shutdown()

    async def _restart(self, offset_s: float) -> None:
        logger.info("camera.file_loop camera=%s offset_s=%.3f", self.name, offset_s)
        await self._worker.run(self._reader.close)
        container = await self._worker.run(open_container, str(self.path))
        self._reader = self._stream_reader(container)
        self._decoded = None
        self._ready = []
        self._pass_offset_s = offset_s
        self._first_pts_s = None

    def _stream_reader(self, container: object) -> StreamReader:
        reader = StreamReader(
            container,
            microphone=self._sound,
            audio_time=self._audio_time,
            one_thread=self._one_thread,
        )
        if getattr(self, "_light", False):
            reader.decode_lightly()
        return reader

    def _audio_time(self, stream_s: float) -> float:
        """A sound sample's time in the file as seconds on the frames' clock (on the worker)."""
        first_s = self._first_pts_s if self._first_pts_s is not None else 0.0
        return self._pass_offset_s + max(0.0, stream_s - first_s)


def _next_batch(decoded: Iterator[Decoded]) -> list[Decoded]:
    """Up to ``_BATCH`` pictures; an empty list at the end of the file."""
    return list(itertools.islice(decoded, _BATCH))
