"""A real Mosquitto broker with the shipped relay configuration, one per test module (it starts
in well under a second): doorbells, an owner, a requester, an intruder with valid credentials of
its own, and the broker's operator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hub.relay.broker import MosquittoBroker
from tests.relay.relaykit import CLIENTS, DEVICES, OPERATOR, OWNED, need_mosquitto


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    need_mosquitto()
    server = MosquittoBroker(
        tmp_path_factory.mktemp("mosquitto"),
        devices=DEVICES,
        clients=CLIENTS,
        owners=OWNED,
        operators=[OPERATOR],
    )
    server.start()
    yield server
    server.stop()
