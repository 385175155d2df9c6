"""Consent fixtures: the device and key bundles, the paired owners and a device world, built
with tests.consent.kit."""

from __future__ import annotations

from pathlib import Path

import pytest

from consent.models import PairedOwner
from crypto.keys import DeviceIdentity, KeyBundle
from tests.consent.kit import Owners, World, build_world


@pytest.fixture(scope="session")
def device() -> DeviceIdentity:
    return DeviceIdentity.generate()


@pytest.fixture(scope="session")
def owner() -> KeyBundle:
    return KeyBundle.generate("hybrid")


@pytest.fixture(scope="session")
def second_owner() -> KeyBundle:
    return KeyBundle.generate("hybrid")


@pytest.fixture(scope="session")
def requester() -> KeyBundle:
    return KeyBundle.generate("x25519")


@pytest.fixture
def owners(owner: KeyBundle, second_owner: KeyBundle) -> Owners:
    return Owners(
        [
            PairedOwner.from_public(owner.signing_key.public_key()),
            PairedOwner.from_public(second_owner.signing_key.public_key()),
        ]
    )


@pytest.fixture
def world(
    tmp_path: Path,
    device: DeviceIdentity,
    owner: KeyBundle,
    second_owner: KeyBundle,
    owners: Owners,
) -> World:
    return build_world(tmp_path, device, [owner, second_owner], owners)
