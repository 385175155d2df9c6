"""Errors raised by the recording pipeline and the clip store.

Hierarchy::

    DoorwardError
    └── DeviceError           the recording side cannot do what was asked
        ├── StoreError        the clip store refused an operation or is inconsistent
        │   └── ClipHeld      the clip is held by a release and cannot be deleted
        └── ClipRefused       a clip could not be written (disk full twice, I/O error, no owners)
"""

from __future__ import annotations

from crypto.errors import DoorwardError

__all__ = ["ClipHeld", "ClipRefused", "DeviceError", "StoreError"]


class DeviceError(DoorwardError):
    """The recording side cannot do what was asked."""


class StoreError(DeviceError):
    """The clip store refused an operation: unknown id, bad camera name, or a broken store."""


class ClipHeld(StoreError):
    """The clip is held by an approved release; release the hold before deleting it."""


class ClipRefused(DeviceError):
    """A clip could not be written: the disk stayed full, an I/O error, or no owner to encrypt to."""
