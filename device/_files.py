"""Segment files for the clip store: streamed into a temp file, then fsync, rename, fsync of the
directory (whole files are written with :func:`crypto.files.write_atomic`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from crypto.files import TEMP_SUFFIX, fsync_dir

__all__ = ["SegmentFile", "SegmentSink"]


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class SegmentSink(Protocol):
    """What one segment's ciphertext is written into until it is committed or aborted: a
    :class:`SegmentFile`, or something wrapping one (the harness's faulty disk)."""

    @property
    def size(self) -> int: ...

    def write(self, data: bytes | bytearray | memoryview) -> int: ...

    def flush(self) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class SegmentFile:
    """A write-only temp file that becomes ``final`` on :meth:`commit` and vanishes on :meth:`abort`.

    It is the ``dst`` the age encryptor writes into: only ciphertext ever passes through it.
    """

    def __init__(self, final: Path) -> None:
        self.final = final
        self.temp = final.with_name(f".{final.name}{TEMP_SUFFIX}")
        self._fd: int | None = os.open(
            self.temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
        )
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._fd is None:
            raise ValueError(f"segment file {self.temp.name} is closed")
        _write_all(self._fd, data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered here; durability comes from :meth:`commit`."""

    def commit(self) -> None:
        """fsync the data, rename into place, fsync the directory."""
        if self._fd is None:
            raise ValueError(f"segment file {self.temp.name} is closed")
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None
        os.replace(self.temp, self.final)
        fsync_dir(self.final.parent)

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.temp.unlink(missing_ok=True)
