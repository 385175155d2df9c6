"""Device fixtures: an owner, a device identity and a clip store (helpers: tests.device.kit)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto import age
from crypto.keys import DeviceIdentity
from device import ClipStore


@pytest.fixture
def owner() -> age.X25519Identity:
    return age.X25519Identity.generate()


@pytest.fixture
def device() -> DeviceIdentity:
    return DeviceIdentity.generate()


@pytest.fixture
def store(tmp_path: Path, device: DeviceIdentity) -> Iterator[ClipStore]:
    clip_store = ClipStore(tmp_path / "data", device)
    yield clip_store
    clip_store.close()
