"""The hybrid (ML-KEM-768+X25519) relay encapsulation: round trips and refusals (no RFC vectors exist)."""

from __future__ import annotations

import re

import pytest

from hub.wire.bhttp import Request, Response, parse_request, parse_response
from hub.wire.ohttp import DecapsulationFailed, OhttpError, UnknownKey
from hub.wire.ohttp_pq import (
    PqGatewayKey,
    PqKeyConfig,
    pq_decapsulate_request,
    pq_encapsulate_request,
)

KEY = PqGatewayKey.generate(4)
REQUEST = Request("GET", "https", "doorbell", "/health").encode()


def test_round_trip_through_binary_http() -> None:
    encapsulated, client = pq_encapsulate_request(KEY.config(), REQUEST)
    opened, gateway = pq_decapsulate_request(KEY, encapsulated)
    assert parse_request(opened) == Request("GET", "https", "doorbell", "/health")
    sealed = gateway.seal_response(Response(200, content=b"ok").encode())
    assert parse_response(client.open_response(sealed)) == Response(200, content=b"ok")
    # 7-byte header, 1,120-byte encapsulation, 1,216-byte response key, 16-byte tag.
    assert len(encapsulated) == 7 + 1120 + 1216 + len(REQUEST) + 16


def test_key_configuration_round_trips_and_refuses_other_kems() -> None:
    config = KEY.config()
    assert PqKeyConfig.parse(bytes(config)) == config
    with pytest.raises(UnknownKey, match="has KEM 0x0020, not 0x647a"):
        PqKeyConfig.parse(bytes(config)[:1] + b"\x00\x20" + bytes(config)[3:])
    with pytest.raises(OhttpError, match="must be 1219 bytes, got 1218"):
        PqKeyConfig.parse(bytes(config)[:-1])


def test_a_response_does_not_open_with_another_requests_exchange() -> None:
    first, first_client = pq_encapsulate_request(KEY.config(), b"first")
    _, second_client = pq_encapsulate_request(KEY.config(), b"second")
    _, gateway = pq_decapsulate_request(KEY, first)
    answer = gateway.seal_response(b"to first")
    assert first_client.open_response(answer) == b"to first"
    with pytest.raises(DecapsulationFailed, match="it answers another request"):
        second_client.open_response(answer)


def test_wrong_key_id_and_wrong_key_are_refused() -> None:
    encapsulated, _ = pq_encapsulate_request(KEY.config(), REQUEST)
    with pytest.raises(UnknownKey, match="names key id 4, this gateway serves 5"):
        pq_decapsulate_request(PqGatewayKey.generate(5), encapsulated)
    with pytest.raises(DecapsulationFailed, match="does not open with relay key 4"):
        pq_decapsulate_request(PqGatewayKey.generate(4), encapsulated)


@pytest.mark.parametrize("index", [0 + 7, 500, 1126, 1127, 2000, -1])
def test_altered_requests_are_refused(index: int) -> None:
    encapsulated = bytearray(pq_encapsulate_request(KEY.config(), REQUEST)[0])
    encapsulated[index] ^= 0x01
    with pytest.raises(DecapsulationFailed):
        pq_decapsulate_request(KEY, bytes(encapsulated))


def test_truncated_oversized_and_foreign_suite_requests_are_refused() -> None:
    encapsulated, client = pq_encapsulate_request(KEY.config(), b"")
    with pytest.raises(
        OhttpError, match=re.escape("is 2358 bytes, shorter than the minimum of 2359")
    ):
        pq_decapsulate_request(KEY, encapsulated[:-1])
    with pytest.raises(OhttpError, match="over the limit of 100 bytes"):
        pq_decapsulate_request(KEY, encapsulated, max_bytes=100)
    with pytest.raises(UnknownKey, match="is not the hybrid suite"):
        pq_decapsulate_request(KEY, encapsulated[:1] + b"\x00\x20" + encapsulated[3:])
    with pytest.raises(OhttpError, match="shorter than the minimum of 1136"):
        client.open_response(b"\x00" * 100)


def test_secrets_stay_out_of_reprs() -> None:
    encapsulated, client = pq_encapsulate_request(KEY.config(), REQUEST)
    _, gateway = pq_decapsulate_request(KEY, encapsulated)
    assert repr(KEY) == "PqGatewayKey(key_id=4)"
    assert "seed" not in repr(client)
    assert "response_public" not in repr(gateway)
    with pytest.raises(OhttpError, match="seed must be 96 bytes, got 3"):
        PqGatewayKey(1, b"abc")
