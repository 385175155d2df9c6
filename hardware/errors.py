"""Errors raised by Doorward's camera and sensor sources.

Hierarchy::

    DoorwardError               root of every error Doorward raises on purpose
    └── HardwareError           a camera, button or scenario problem
        ├── ScenarioError       a scenario file is malformed (names file, line and key)
        ├── CameraOpenFailed    a source could not be opened (after every retry)
        └── CameraDisconnected  a source stopped delivering frames mid-stream
"""

from __future__ import annotations

from crypto.errors import DoorwardError

__all__ = ["CameraDisconnected", "CameraOpenFailed", "HardwareError", "ScenarioError"]


class HardwareError(DoorwardError):
    """A camera, button or scenario problem."""


class ScenarioError(HardwareError):
    """A scenario file is malformed; the message names the file, the line and the key to fix."""


class CameraOpenFailed(HardwareError):
    """A camera source could not be opened: check the path or URL, the device and the network."""


class CameraDisconnected(HardwareError):
    """A camera stopped delivering frames; iterate ``frames()`` again to reconnect."""
