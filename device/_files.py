"""Durable file writes for the clip store: temp file, fsync, rename, fsync of the directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

__all__ = ["TEMP_SUFFIX", "SegmentFile", "SegmentSink", "fsync_dir", "write_atomic"]

TEMP_SUFFIX = (
    ".tmp"  # every file a crash may leave half-written ends with this; recovery removes them
)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(f".{path.name}{TEMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


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
