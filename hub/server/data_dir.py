"""The device's data folder is the device's alone: it holds the device key, requesters' contacts
and reasons, owners' names and the times of visits.

:func:`prepare_data_dir` makes the folder and its ``keys/`` 0700 (narrowing an existing folder
that group or others could open, with a warning that says so); ``serve`` also runs under
:data:`PRIVATE_UMASK`, so every file it creates (databases and their WAL files, certificates,
clips, manifests) is readable by the device's user only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from crypto.files import private_dir

__all__ = ["PRIVATE_UMASK", "prepare_data_dir"]

logger = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077  # new files 0600, new folders 0700


def prepare_data_dir(data_dir: Path) -> None:
    """Create ``data_dir`` and ``data_dir/keys`` with mode 0700, or narrow them to 0700."""
    for folder in (Path(data_dir), Path(data_dir) / "keys"):
        old_mode = private_dir(folder)
        if old_mode is not None:
            logger.warning(
                "data_dir.narrowed path=%s old_mode=%04o new_mode=0700", folder, old_mode
            )
