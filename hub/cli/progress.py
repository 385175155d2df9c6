"""A small progress line on stderr for downloads; silent unless stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import IO

__all__ = ["Progress", "ProgressWriter"]

_REDRAW_EVERY_S = 0.1
_WIDTH = 24


class Progress:
    """Counts bytes and redraws ``label: 1.2 MB [#####   ] 40%`` (a bar only when ``total`` is
    known) at most ten times a second."""

    def __init__(self, label: str, total: int | None = None, *, out: IO[str] | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._out = out if out is not None else sys.stderr
        self._enabled = self._out.isatty()
        self._drawn_at = 0.0

    def update(self, n: int) -> None:
        """Count ``n`` more bytes, redrawing if the last draw is at least 0.1 s old."""
        self.done += n
        now = time.monotonic()
        if self._enabled and now - self._drawn_at >= _REDRAW_EVERY_S:
            self._drawn_at = now
            self._draw()

    def close(self) -> None:
        """Draw the final line and end it with a newline (nothing when not a terminal)."""
        if self._enabled:
            self._draw()
            self._out.write("\n")
            self._out.flush()

    def render(self) -> str:
        """The current line without the carriage return, e.g. ``seg: 1.2 MB [####    ] 40%``."""
        text = f"{self.label}: {_size(self.done)}"
        if self.total:
            fraction = min(1.0, self.done / self.total)
            filled = int(fraction * _WIDTH)
            text += f" [{'#' * filled}{' ' * (_WIDTH - filled)}] {fraction:.0%}"
        return text

    def _draw(self) -> None:
        self._out.write("\r" + self.render())
        self._out.flush()


class ProgressWriter:
    """A binary file wrapper that reports every write to a :class:`Progress`."""

    def __init__(self, dst: IO[bytes], progress: Progress) -> None:
        self._dst = dst
        self._progress = progress

    def write(self, data: bytes) -> int:
        """Write ``data`` to the wrapped file and count it; returns what that write returned."""
        written = self._dst.write(data)
        self._progress.update(len(data))
        return written

    def seekable(self) -> bool:
        """Whether the wrapped file can seek (a failed download is then undone in place)."""
        return self._dst.seekable()

    def tell(self) -> int:
        """The wrapped file's position."""
        return self._dst.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move the wrapped file's position."""
        return self._dst.seek(offset, whence)

    def truncate(self) -> int:
        """Cut the wrapped file at its position; the count restarts from there."""
        size = self._dst.truncate()
        self._progress.done = size
        return size


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} kB"
    return f"{n / (1024 * 1024):.1f} MB"
