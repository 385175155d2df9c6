"""The hybrid (ML-KEM-768+X25519) relay encapsulation: round trips and refusals (no RFC vectors exist)."""

from __future__ import annotations

import re

import pytest

from hub.wire.bhttp import Request, Response, parse_request, parse_response
from hub.wire.ohttp import DecapsulationFailed, GatewayKey, OhttpError, UnknownKey
from hub.wire.ohttp_chunked import StreamBroken
from hub.wire.ohttp_pq import (
    PqGatewayKey,
    PqKeyConfig,
    pq_decapsulate_chunked,
    pq_decapsulate_request,
    pq_encapsulate_chunked,
    pq_encapsulate_request,
)
from hub.wire.relay_keys import RelayKeys

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


# -- the chunked variant the relay uses --------------------------------------------------------


def test_chunked_round_trip_in_several_chunks() -> None:
    encapsulated, client = pq_encapsulate_chunked(KEY.config(), REQUEST)
    # 7-byte header, 1,120-byte encapsulation, the 32-byte response secret, the request, a tag.
    assert len(encapsulated) == 7 + 1120 + 32 + len(REQUEST) + 16
    opened, gateway = pq_decapsulate_chunked(KEY, encapsulated)
    assert opened == REQUEST
    sealer = gateway.sealer()
    chunks = [sealer.nonce + sealer.seal(b"one"), sealer.seal(b"two"), sealer.seal(b"", final=True)]
    opener = client.opener()
    assert opener.open_first(chunks[0]) == (b"one", False)
    assert opener.open_chunk(chunks[1]) == (b"two", False)
    assert opener.open_chunk(chunks[2]) == (b"", True)


def test_a_chunked_answer_opens_only_for_its_own_request() -> None:
    first, client = pq_encapsulate_chunked(KEY.config(), REQUEST)
    second, _ = pq_encapsulate_chunked(KEY.config(), REQUEST)
    assert first[7:] != second[7:]  # a fresh encapsulation and secret every time
    _, gateway = pq_decapsulate_chunked(KEY, second)
    sealer = gateway.sealer()
    with pytest.raises(StreamBroken):
        client.opener().open_first(sealer.nonce + sealer.seal(b"not yours", final=True))


def test_chunked_requests_that_do_not_open_are_refused() -> None:
    encapsulated, _ = pq_encapsulate_chunked(KEY.config(), REQUEST)
    flipped = encapsulated[:-1] + bytes([encapsulated[-1] ^ 1])
    with pytest.raises(DecapsulationFailed, match="does not open with hybrid relay key 4"):
        pq_decapsulate_chunked(KEY, flipped)
    with pytest.raises(DecapsulationFailed, match="does not open"):
        pq_decapsulate_chunked(PqGatewayKey(4, PqGatewayKey.generate(4).seed), encapsulated)
    with pytest.raises(UnknownKey, match="is not the hybrid suite of key 5"):
        pq_decapsulate_chunked(PqGatewayKey(5, KEY.seed), encapsulated)
    with pytest.raises(OhttpError, match="shorter than the minimum"):
        pq_decapsulate_chunked(KEY, encapsulated[:100])


# -- the pinned list of both keys ---------------------------------------------------------------


def test_relay_keys_travel_as_one_ohttp_keys_list() -> None:
    classic = GatewayKey.generate(1).config()
    keys = RelayKeys(classic, KEY.config())
    data = bytes(keys)
    assert data[:2] == len(bytes(classic)).to_bytes(2, "big")
    assert RelayKeys.parse(data) == keys
    # A lone RFC 9458 configuration, as devices before the hybrid key served: no hybrid key.
    assert RelayKeys.parse(bytes(classic)) == RelayKeys(classic)
    assert bytes(RelayKeys(classic)) == len(bytes(classic)).to_bytes(2, "big") + bytes(classic)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda c, h: _listed(h), "holds no X25519 configuration"),
        (lambda c, h: _listed(c, c), "holds two X25519 configurations"),
        (lambda c, h: _listed(c, h, h), "holds two hybrid configurations"),
        (lambda c, h: _listed(c, bytes(PqGatewayKey(1, KEY.seed).config())), "gives key id 1"),
        (lambda c, h: b"\x00\x05abc", "key configuration"),
    ],
)
def test_bad_relay_key_lists_are_refused(make, message: str) -> None:  # type: ignore[no-untyped-def]
    classic, hybrid = bytes(GatewayKey.generate(1).config()), bytes(KEY.config())
    with pytest.raises(OhttpError, match=message):
        RelayKeys.parse(make(classic, hybrid))


def _listed(*configs: bytes) -> bytes:
    return b"".join(len(c).to_bytes(2, "big") + c for c in configs)
