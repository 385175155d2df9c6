"""Fixtures for the hardware tests: a hand-driven clock (tests.hardware.kit)."""

from __future__ import annotations

import pytest

from tests.hardware.kit import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
