"""The doorbell button: its events and the protocol every button implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = ["ButtonEvent", "DoorbellButton", "PressableButton"]


@dataclass(frozen=True, slots=True)
class ButtonEvent:
    """A press, or a hold that lasted ``held_s`` seconds; ``at_s`` is when it started."""

    kind: Literal["press", "hold"]
    at_s: float
    held_s: float = 0.0

    def __post_init__(self) -> None:
        if self.held_s < 0:
            raise ValueError(f"held_s must be >= 0, got {self.held_s}")


@runtime_checkable
class DoorbellButton(Protocol):
    """A doorbell button: its presses and holds, in order, until closed."""

    def events(self) -> AsyncIterator[ButtonEvent]:
        """Presses and holds in the order they happen, until :meth:`close`."""
        ...

    async def close(self) -> None:
        """Stop the button; :meth:`events` then ends."""
        ...


@runtime_checkable
class PressableButton(DoorbellButton, Protocol):
    """A button pressed by code: the service forwards a camera's presses to the pipeline's."""

    def press(self, at_s: float | None = None) -> ButtonEvent:
        """Queue a press at ``at_s`` (default: the clock's monotonic now) and return it."""
        ...
