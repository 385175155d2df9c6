"""Storage fault injection for one camera's segment writes (the harness's disk_full and slow_disk)."""

from __future__ import annotations

import errno
import os
import threading
import time

__all__ = ["StorageFaults"]


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
