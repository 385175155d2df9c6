"""Storage fault injection for one camera's segment writes (the harness's disk_full and slow_disk).

Faults go in through the same seam a real store uses: :class:`FaultyStore` wraps a
:class:`~device.store.ClipStore` as the ``store`` of one :class:`~device.pipeline.CameraPipeline`,
and every segment file it opens consults a :class:`StorageFaults` before each write. Other cameras
sharing the same store (unwrapped) write normally.
"""

from __future__ import annotations

import errno
import os
import threading
import time

from device._files import SegmentFile, SegmentSink
from device.store import ClipRecord, ClipStore, SegmentRecord

__all__ = ["FaultyStore", "StorageFaults"]


class StorageFaults:
    """Thread-safe switches consulted before every segment write of the pipeline that holds them.

    The harness flips them from the event loop (for example in ``on_frame`` at a scenario's
    ``at_s``); the writes happen in the camera's worker thread, which is the one that fails or waits.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._disk_full = False
        self._fail_next = 0
        self._delay_s = 0.0
        self._gate = threading.Event()
        self._gate.set()
        self.waiting = threading.Event()  # set once a write has waited at a closed gate
        self.injected_failures = 0

    def set_disk_full(self, full: bool) -> None:
        """While set, every write fails with ENOSPC."""
        with self._lock:
            self._disk_full = full

    def fail_next_writes(self, count: int) -> None:
        """The next ``count`` writes fail with ENOSPC, then writes succeed again."""
        with self._lock:
            self._fail_next = count

    def set_delay_s(self, delay_s: float) -> None:
        """Each write sleeps ``delay_s`` first: a slow SD card."""
        with self._lock:
            self._delay_s = delay_s

    def block(self) -> None:
        """Writes wait until :meth:`unblock`: a disk that stalls completely."""
        self._gate.clear()

    def unblock(self) -> None:
        """Let the writes held at :meth:`block`'s gate, and all later ones, go on."""
        self._gate.set()

    def before_write(self, nbytes: int) -> None:
        """Called in the writer thread before ``nbytes`` are written; raises or waits as set."""
        with self._lock:
            fail = self._disk_full or self._fail_next > 0
            if self._fail_next > 0:
                self._fail_next -= 1
            if fail:
                self.injected_failures += 1
            delay_s = self._delay_s
        if fail:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if delay_s > 0:
            time.sleep(delay_s)
        if not self._gate.is_set():
            self.waiting.set()
            self._gate.wait()


class FaultyStore:
    """One camera's view of ``store`` (a ``ClipSink``) whose segment writes consult ``faults``."""

    def __init__(self, store: ClipStore, faults: StorageFaults) -> None:
        self.store = store
        self.faults = faults

    def open_clip(self, camera: str, start_s: float) -> str:
        """``store.open_clip``, unchanged (no fault applies): the new clip's id."""
        return self.store.open_clip(camera, start_s)

    def open_segment(self, clip_id: str, index: int) -> _FaultySegment:
        """``store.open_segment``, wrapped: each write first calls ``faults.before_write``."""
        return _FaultySegment(self.store.open_segment(clip_id, index), self.faults)

    def commit_segment(
        self,
        clip_id: str,
        index: int,
        file: SegmentSink,
        *,
        start_s: float,
        duration_s: float,
        payload_sha256: bytes,
    ) -> SegmentRecord:
        """``store.commit_segment``, unchanged (no fault applies)."""
        return self.store.commit_segment(
            clip_id,
            index,
            file,
            start_s=start_s,
            duration_s=duration_s,
            payload_sha256=payload_sha256,
        )

    def finish_clip(self, clip_id: str, end_s: float) -> ClipRecord:
        """``store.finish_clip``, unchanged (no fault applies)."""
        return self.store.finish_clip(clip_id, end_s)

    def evict_oldest(self, *, exclude: str | None = None) -> str | None:
        """``store.evict_oldest``, unchanged: the evicted clip's id, or None."""
        return self.store.evict_oldest(exclude=exclude)


class _FaultySegment:
    """A segment file whose every write first asks the faults (which may raise ENOSPC or wait)."""

    def __init__(self, file: SegmentFile, faults: StorageFaults) -> None:
        self._file = file
        self._faults = faults

    @property
    def size(self) -> int:
        return self._file.size

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._faults.before_write(len(data))
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def commit(self) -> None:
        self._file.commit()

    def abort(self) -> None:
        self._file.abort()
