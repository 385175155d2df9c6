"""SoftButton: presses and holds in order, timestamps, the pending cap, closing."""

from __future__ import annotations

import logging

import pytest

from hardware import ButtonEvent, DoorbellButton, HardwareError, SoftButton
from tests.hardware.kit import FakeClock


@pytest.mark.asyncio
async def test_presses_and_holds_arrive_in_order_with_times() -> None:
    clock = FakeClock()
    button = SoftButton(clock=clock)
    assert isinstance(button, DoorbellButton)
    clock.t = 4.0
    assert button.press() == ButtonEvent("press", 4.0)
    button.hold(12.5, at_s=6.0)
    assert button.pending == 2
    await button.close()
    assert [e async for e in button.events()] == [
        ButtonEvent("press", 4.0),
        ButtonEvent("hold", 6.0, held_s=12.5),
    ]
    assert button.pending == 0


@pytest.mark.asyncio
async def test_a_waiting_reader_gets_the_press() -> None:
    button = SoftButton(clock=FakeClock())
    events = button.events()
    pending = events.__anext__()
    button.press(at_s=1.0)
    assert await pending == ButtonEvent("press", 1.0)
    await button.close()
    assert [e async for e in events] == []


@pytest.mark.asyncio
async def test_oldest_event_is_dropped_past_the_cap(caplog: pytest.LogCaptureFixture) -> None:
    button = SoftButton(clock=FakeClock(), max_pending=2)
    with caplog.at_level(logging.WARNING, logger="hardware.sim._button"):
        for t in (1.0, 2.0, 3.0):
            button.press(at_s=t)
    assert caplog.messages == ["button.event_dropped kind=press at_s=1.0"]
    await button.close()
    assert [e.at_s async for e in button.events()] == [2.0, 3.0]


@pytest.mark.asyncio
async def test_closed_button_refuses_presses() -> None:
    button = SoftButton(clock=FakeClock())
    await button.close()
    with pytest.raises(HardwareError, match=r"^the button is closed: make a new one$"):
        button.press()


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^held_s must be >= 0, got -1$"):
        ButtonEvent("hold", 0.0, held_s=-1)
    with pytest.raises(ValueError, match=r"^max_pending must be >= 1, got 0$"):
        SoftButton(max_pending=0)
