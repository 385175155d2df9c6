"""Durable file replacement: temp file in the same folder, fsync, rename, fsync of the folder.

Every package writes its files through :func:`write_atomic` (key files, the phone's audit
checkpoint, clip manifests), so a crash or a full disk leaves either the old file or the new one,
never half of either. Temp files are named ``.<name>.<random>.tmp``: a store that cleans up after a
crash removes ``*`` :data:`TEMP_SUFFIX` files. Folders that hold secrets or private records (the
device's data folder, a phone's profile) are made with :func:`private_dir`.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

__all__ = ["TEMP_SUFFIX", "fsync_dir", "private_dir", "write_atomic"]

TEMP_SUFFIX = ".tmp"  # every file a crash may leave half-written ends with this


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file.

    The file is created readable and writable by its owner only (0600, narrowed by the umask);
    ``mode``, when given, is set exactly (``0o600`` for secrets even under an unusual umask). The
    folder must exist. If anything fails, the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    # mkstemp opens with O_EXCL and mode 0600: no other process can open the temp file first.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    tmp = Path(tmp_name)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """fsync a folder, making the renames and creations in it durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: Path) -> int | None:
    """Make ``path`` a folder only its owner may open (0700): create it (and missing parents) if
    needed, else narrow it if group or others have any access. Returns the mode it had when it
    was narrowed (callers log that), else None."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & 0o077:
        return None
    os.chmod(path, 0o700)
    return mode
