"""The doorbell button on a GPIO line, through the kernel's GPIO character device (libgpiod v2).

:class:`GpioButton` implements :class:`~hardware.button.DoorbellButton`, as the simulated press
does: pushing the button is a ``press`` at once (the bell must not wait for the release), and a
release after at least ``hold_s`` is also a ``hold`` that lasted that long. The kernel reports
edges already inverted for an active-low line and debounced (``debounce_period``, emulated in
software where the chip cannot); :class:`EdgeDecoder`, the pure core, debounces again and ignores
edges that repeat a level, so a chip without debounce or a missed edge cannot double-ring.

The ``gpiod`` Python bindings (``pip install 'doorward[gpio]'``, version 2) are imported only when a
button is opened. Opening fails with :class:`ButtonOpenFailed`, saying what to fix, when the
bindings are missing, the chip does not exist or is not a GPIO chip, the line is not on it, or the
user may not open it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardware.button import ButtonEvent
from hardware.errors import HardwareError

__all__ = ["BIASES", "ButtonOpenFailed", "EdgeDecoder", "GpioButton", "GpioButtonSpec"]

logger = logging.getLogger(__name__)

BIASES = ("pull-up", "pull-down", "disabled", "as-is")
_KEYS = ("chip", "line", "active_low", "bias", "debounce_ms", "hold_s", "camera")


class ButtonOpenFailed(HardwareError):
    """The GPIO button could not be opened: the message says which setting or permission to fix."""


@dataclass(frozen=True, slots=True)
class GpioButtonSpec:
    """Which GPIO line the button is on and how it behaves (the ``[button]`` config table)."""

    chip: str
    line: int | str
    active_low: bool = True
    bias: str = "pull-up"
    debounce_ms: int = 20
    hold_s: float = 1.0
    camera: str | None = None  # the camera a press rings; None: the first

    def __post_init__(self) -> None:
        if not isinstance(self.chip, str) or not self.chip:
            raise ValueError(f"chip must be a GPIO chip like /dev/gpiochip0, got {self.chip!r}")
        line_ok = (
            isinstance(self.line, int) and not isinstance(self.line, bool) and self.line >= 0
        ) or (isinstance(self.line, str) and 0 < len(self.line) <= 64)
        if not line_ok:
            raise ValueError(
                f"line must be a line offset (0, 1, …) or a line name, got {self.line!r}"
            )
        if not isinstance(self.active_low, bool):
            raise ValueError(f"active_low must be true or false, got {self.active_low!r}")
        if self.bias not in BIASES:
            raise ValueError(f"bias must be one of {', '.join(BIASES)}, got {self.bias!r}")
        if not isinstance(self.debounce_ms, int) or not 0 <= self.debounce_ms <= 1000:
            raise ValueError(
                f"debounce_ms must be an integer from 0 to 1000, got {self.debounce_ms!r}"
            )
        if not 0 < self.hold_s <= 60:
            raise ValueError(f"hold_s must be > 0 and at most 60, got {self.hold_s!r}")

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> GpioButtonSpec:
        """From the ``[button]`` table; unknown keys are refused by name."""
        unknown = sorted(set(table) - set(_KEYS))
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(_KEYS)}")
        if "chip" not in table or "line" not in table:
            raise ValueError('chip and line are required, e.g. chip = "/dev/gpiochip0", line = 17')
        return cls(**table)

    @property
    def chip_path(self) -> str:
        """The chip's device path (``gpiochip0`` is ``/dev/gpiochip0``)."""
        return self.chip if self.chip.startswith("/") else f"/dev/{self.chip}"


class EdgeDecoder:
    """Turns the line's logical edges (pressed, released; kernel nanoseconds) into button events.

    An edge less than ``debounce_ns`` after the last accepted one is bounce and is dropped; an
    edge to the level the line already has is dropped too. ``at_s`` of the events is the edge
    time in seconds on the kernel's clock (monotonic, as the rest of Doorward's ``at_s``).
    """

    def __init__(self, *, debounce_ns: int, hold_ns: int) -> None:
        if debounce_ns < 0 or hold_ns <= 0:
            raise ValueError(
                f"debounce_ns must be >= 0 and hold_ns > 0, got {debounce_ns}, {hold_ns}"
            )
        self._debounce_ns = debounce_ns
        self._hold_ns = hold_ns
        self._pressed_at: int | None = None
        self._last_edge: int | None = None
        self.bounces = 0

    def edge(self, pressed: bool, timestamp_ns: int) -> list[ButtonEvent]:
        """Feed one edge; the events it completes (a press at once, a hold at its release)."""
        if self._last_edge is not None and timestamp_ns - self._last_edge < self._debounce_ns:
            self.bounces += 1
            return []
        if pressed == (self._pressed_at is not None):
            return []  # the level did not change: a lost edge in between, or a repeat
        self._last_edge = timestamp_ns
        if pressed:
            self._pressed_at = timestamp_ns
            return [ButtonEvent("press", timestamp_ns / 1e9)]
        start, self._pressed_at = self._pressed_at, None
        assert start is not None
        held_ns = timestamp_ns - start
        if held_ns >= self._hold_ns:
            return [ButtonEvent("hold", start / 1e9, held_s=held_ns / 1e9)]
        return []


class GpioButton:
    """A doorbell button on a GPIO line (implements DoorbellButton); :meth:`open` claims the line."""

    def __init__(self, spec: GpioButtonSpec, *, consumer: str = "doorward") -> None:
        self.spec = spec
        self._consumer = consumer
        self._request: Any = None
        self._offset: int | None = None
        self._decoder = EdgeDecoder(
            debounce_ns=spec.debounce_ms * 1_000_000, hold_ns=round(spec.hold_s * 1e9)
        )
        self._queue: asyncio.Queue[ButtonEvent | None] = asyncio.Queue(maxsize=64)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def open(self) -> GpioButton:
        """Request the line as an input with edge events (blocking; cheap). Raises ButtonOpenFailed."""
        gpiod = _import_gpiod()
        spec = self.spec
        path = spec.chip_path
        if not Path(path).exists():
            chips = _chips_here()
            if not chips:
                raise ButtonOpenFailed(
                    f"GPIO chip {path} does not exist, and this machine has no GPIO chip: remove "
                    "[button] from the config, or enable the board's GPIO driver"
                )
            raise ButtonOpenFailed(
                f"GPIO chip {path} does not exist: set chip in [button] to one of {chips} "
                "(gpiodetect lists them)"
            )
        try:
            if not gpiod.is_gpiochip_device(path):
                raise ButtonOpenFailed(
                    f"{path} is not a GPIO chip: set chip in [button] to one of "
                    f"{_chips_here() or 'the /dev/gpiochip* devices (this machine has none)'}"
                )
            from gpiod.line import Bias, Direction, Edge

            settings = gpiod.LineSettings(
                direction=Direction.INPUT,
                edge_detection=Edge.BOTH,
                bias={
                    "pull-up": Bias.PULL_UP,
                    "pull-down": Bias.PULL_DOWN,
                    "disabled": Bias.DISABLED,
                }.get(spec.bias, Bias.AS_IS),
                active_low=spec.active_low,
                debounce_period=dt.timedelta(milliseconds=spec.debounce_ms),
            )
            with gpiod.Chip(path) as chip:
                offset = (
                    spec.line if isinstance(spec.line, int) else chip.line_offset_from_id(spec.line)
                )
                lines = chip.get_info().num_lines
            if not 0 <= offset < lines:
                raise ButtonOpenFailed(
                    f"{path} has lines 0 to {lines - 1}: line {offset} in [button] is not one of them"
                )
            self._request = gpiod.request_lines(
                path, consumer=self._consumer, config={offset: settings}
            )
        except PermissionError as exc:
            raise ButtonOpenFailed(
                f"no permission to open {path}: run as a user in the group that owns it "
                "(gpio on Raspberry Pi OS), and under systemd allow it with DeviceAllow="
            ) from exc
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise ButtonOpenFailed(
                    f"line {spec.line} of {path} is used by another program (gpioinfo shows which)"
                ) from exc
            raise ButtonOpenFailed(
                f"cannot open line {spec.line} of {path}: {exc.strerror or exc}"
            ) from exc
        except ValueError as exc:  # a line name the chip does not have
            raise ButtonOpenFailed(f"{path} has no line named {spec.line!r}: {exc}") from exc
        self._offset = offset
        logger.info("button.opened chip=%s line=%s active_low=%s", path, offset, spec.active_low)
        return self

    async def events(self) -> AsyncIterator[ButtonEvent]:
        """Presses and holds as the line's edges arrive, until :meth:`close`."""
        if self._request is None:
            raise HardwareError("the GPIO button is not open: call open() first")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            loop.add_reader(self._request.fd, self._read_edges)
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    async def close(self) -> None:
        """Release the line; :meth:`events` then ends."""
        if self._closed:
            return
        self._closed = True
        if self._request is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._request.fd)
            self._request.release()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    def _read_edges(self) -> None:
        from gpiod.edge_event import EdgeEvent

        for edge in self._request.read_edge_events():
            pressed = edge.event_type is EdgeEvent.Type.RISING_EDGE  # logical: active_low applied
            for event in self._decoder.edge(pressed, edge.timestamp_ns):
                try:
                    self._queue.put_nowait(event)
                except asyncio.QueueFull:
                    logger.warning("button.event_dropped kind=%s", event.kind)


def _import_gpiod() -> Any:
    try:
        import gpiod
    except ImportError as exc:
        raise ButtonOpenFailed(
            "the GPIO button needs the gpiod (libgpiod v2) Python bindings: pip install 'doorward[gpio]'"
        ) from exc
    version = getattr(gpiod, "__version__", "0")
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 2:
        raise ButtonOpenFailed(
            f"gpiod {version} is installed; the GPIO button needs version 2: pip install 'gpiod>=2.1'"
        )
    return gpiod


def _chips_here() -> str:
    return ", ".join(sorted(str(p) for p in Path("/dev").glob("gpiochip*")))
