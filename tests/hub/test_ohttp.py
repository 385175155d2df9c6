"""Oblivious HTTP (RFC 9458): Appendix A's worked example byte for byte, round trips, and refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.errors import DoorwardError
from hub.wire.bhttp import Request, Response, parse_request, parse_response
from hub.wire.ohttp import (
    AEAD_AES_128_GCM,
    AEAD_AES_256_GCM,
    AEAD_CHACHA20_POLY1305,
    KDF_HKDF_SHA256,
    KEM_X25519_HKDF_SHA256,
    DecapsulationFailed,
    GatewayKey,
    KeyConfig,
    OhttpError,
    SymmetricAlgorithm,
    UnknownKey,
    _info,
    decapsulate_request,
    encapsulate_request,
)

A = json.loads((Path(__file__).parent / "data" / "rfc9458_vectors.json").read_text())


def h(name: str) -> bytes:
    return bytes.fromhex(A[name])


RFC_KEY = GatewayKey.from_private_bytes(
    1,
    h("skR"),
    (
        SymmetricAlgorithm(KDF_HKDF_SHA256, AEAD_AES_128_GCM),
        SymmetricAlgorithm(KDF_HKDF_SHA256, AEAD_CHACHA20_POLY1305),
    ),
)
RFC_EPHEMERAL = X25519PrivateKey.from_private_bytes(h("skE"))


# --- RFC 9458 Appendix A ------------------------------------------------------------------------


def test_key_configuration_matches_appendix_a() -> None:
    config = KeyConfig.parse(h("key_config"))
    assert config.key_id == 1
    assert config.kem_id == KEM_X25519_HKDF_SHA256
    assert config.public_key == h("pkR")
    assert config.algorithms == (
        SymmetricAlgorithm(KDF_HKDF_SHA256, AEAD_AES_128_GCM),
        SymmetricAlgorithm(KDF_HKDF_SHA256, AEAD_CHACHA20_POLY1305),
    )
    assert bytes(config) == h("key_config")
    assert RFC_KEY.config() == config  # the private key gives the published public key


def test_client_reproduces_the_encapsulated_request_with_the_fixed_ephemeral_key() -> None:
    config = KeyConfig.parse(h("key_config"))
    encapsulated, exchange = encapsulate_request(config, h("request"), ephemeral_key=RFC_EPHEMERAL)
    assert encapsulated == h("encapsulated_request")
    assert exchange.enc == h("pkE")
    assert exchange.secret == h("secret")


def test_gateway_opens_the_published_request_and_reproduces_the_response() -> None:
    request, exchange = decapsulate_request(RFC_KEY, h("encapsulated_request"))
    assert request == h("request")
    assert parse_request(request) == Request("GET", "https", "example.com", "/")
    assert exchange.secret == h("secret")
    sealed = exchange.seal_response(h("response"), nonce=h("response_nonce"))
    assert sealed == h("encapsulated_response")


def test_client_opens_the_published_response() -> None:
    config = KeyConfig.parse(h("key_config"))
    _, exchange = encapsulate_request(config, h("request"), ephemeral_key=RFC_EPHEMERAL)
    response = exchange.open_response(h("encapsulated_response"))
    assert response == h("response")
    assert parse_response(response) == Response(200)


def test_info_string_is_the_published_one() -> None:
    assert _info(h("encapsulated_request")[:7]) == h("info")


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("aead", [AEAD_AES_128_GCM, AEAD_AES_256_GCM, AEAD_CHACHA20_POLY1305])
def test_round_trip_with_each_aead(aead: int) -> None:
    algorithm = SymmetricAlgorithm(KDF_HKDF_SHA256, aead)
    key = GatewayKey(7, X25519PrivateKey.generate(), (algorithm,))
    wire_request = Request("POST", "https", "doorbell", "/requests", content=b"{}").encode()
    encapsulated, client = encapsulate_request(key.config(), wire_request)
    request, gateway = decapsulate_request([key], encapsulated)
    assert request == wire_request
    wire_response = Response(201, content=b"ok").encode()
    sealed = gateway.seal_response(wire_response)
    assert len(sealed) == max(12, 32 if aead != AEAD_AES_128_GCM else 16) + len(wire_response) + 16
    assert client.open_response(sealed) == wire_response


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=2000), st.binary(max_size=2000))
def test_any_bytes_round_trip(request_body: bytes, response_body: bytes) -> None:
    key = GatewayKey(3, X25519PrivateKey.from_private_bytes(bytes(range(32))))
    encapsulated, client = encapsulate_request(key.config(), request_body)
    opened, gateway = decapsulate_request(key, encapsulated)
    assert opened == request_body
    assert client.open_response(gateway.seal_response(response_body)) == response_body


def test_the_same_request_sealed_twice_differs() -> None:
    key = GatewayKey.generate(1)
    first, _ = encapsulate_request(key.config(), b"same")
    second, _ = encapsulate_request(key.config(), b"same")
    assert first != second


def test_gateway_picks_the_key_the_request_names() -> None:
    old, new = GatewayKey.generate(1), GatewayKey.generate(2)
    encapsulated, _ = encapsulate_request(old.config(), b"to the old key")
    assert decapsulate_request([new, old], encapsulated)[0] == b"to the old key"


def test_key_configuration_list_round_trips_and_skips_unknown_kems() -> None:
    one, two = GatewayKey.generate(1).config(), GatewayKey.generate(2).config()
    listed = KeyConfig.encode_list([one, two])
    assert KeyConfig.parse_list(listed) == (one, two)
    foreign = bytes([9]) + (0x0010).to_bytes(2, "big") + bytes(65) + bytes.fromhex("000400010001")
    mixed = len(foreign).to_bytes(2, "big") + foreign + listed
    assert KeyConfig.parse_list(mixed) == (one, two)
    with pytest.raises(UnknownKey, match="no configuration this client can use"):
        KeyConfig.parse_list(len(foreign).to_bytes(2, "big") + foreign)


# --- refusals ----------------------------------------------------------------------------------


def test_errors_are_doorward_errors() -> None:
    assert issubclass(UnknownKey, OhttpError)
    assert issubclass(DecapsulationFailed, OhttpError)
    assert issubclass(OhttpError, DoorwardError)


def test_wrong_key_id_is_refused_naming_the_served_ids() -> None:
    encapsulated = bytearray(h("encapsulated_request"))
    encapsulated[0] = 9
    with pytest.raises(
        UnknownKey, match="names key id 9, this gateway serves 1: fetch the current"
    ):
        decapsulate_request(RFC_KEY, bytes(encapsulated))


def test_unoffered_algorithms_are_refused() -> None:
    key = GatewayKey(1, X25519PrivateKey.from_private_bytes(h("skR")))
    encapsulated, _ = encapsulate_request(
        key.config(), b"x", algorithm=SymmetricAlgorithm(KDF_HKDF_SHA256, AEAD_AES_128_GCM)
    )
    strict = GatewayKey(
        1, key.private_key, (SymmetricAlgorithm(KDF_HKDF_SHA256, AEAD_CHACHA20_POLY1305),)
    )
    with pytest.raises(UnknownKey, match="AEAD 0x0001, which key 1 does not accept"):
        decapsulate_request(strict, encapsulated)
    with pytest.raises(UnknownKey, match="is not offered by key configuration 1"):
        encapsulate_request(
            strict.config(),
            b"x",
            algorithm=SymmetricAlgorithm(KDF_HKDF_SHA256, AEAD_AES_128_GCM),
        )


def test_wrong_key_with_the_right_id_does_not_open() -> None:
    impostor = GatewayKey(1, X25519PrivateKey.generate(), RFC_KEY.algorithms)
    with pytest.raises(
        DecapsulationFailed, match="does not open with relay key 1: it was sealed to another key"
    ):
        decapsulate_request(impostor, h("encapsulated_request"))


def test_every_altered_byte_of_the_request_is_detected() -> None:
    published = h("encapsulated_request")
    for index in range(7, len(published)):
        altered = bytearray(published)
        altered[index] ^= 0x01
        with pytest.raises(DecapsulationFailed):
            decapsulate_request(RFC_KEY, bytes(altered))


def test_a_low_order_share_is_refused_like_any_other_failure() -> None:
    encapsulated = h("encapsulated_request")[:7] + bytes(32) + h("encapsulated_request")[39:]
    with pytest.raises(DecapsulationFailed, match="does not open with relay key 1"):
        decapsulate_request(RFC_KEY, encapsulated)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "encapsulated request is 0 bytes, shorter than the minimum of 7"),
        (bytes.fromhex("010020"), "encapsulated request is 3 bytes, shorter than the minimum of 7"),
        (
            bytes.fromhex(A["encapsulated_request"])[:54],
            "encapsulated request is 54 bytes, shorter than the minimum of 55",
        ),
        (
            bytes.fromhex("01001000010001") + bytes(80),
            "encapsulated request uses KEM 0x0010",
        ),
    ],
)
def test_truncated_and_malformed_requests_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(OhttpError, match="^" + re.escape(message)):
        decapsulate_request(RFC_KEY, data)


def test_oversized_request_is_refused_before_any_work() -> None:
    with pytest.raises(OhttpError, match="encapsulated request is 80 bytes, over the limit of 79"):
        decapsulate_request(RFC_KEY, h("encapsulated_request"), max_bytes=79)


def test_a_response_does_not_open_with_another_requests_exchange() -> None:
    key = GatewayKey.generate(1)
    first, first_client = encapsulate_request(key.config(), b"first")
    _, second_client = encapsulate_request(key.config(), b"second")
    _, first_gateway = decapsulate_request(key, first)
    answer = first_gateway.seal_response(b"answer to first")
    assert first_client.open_response(answer) == b"answer to first"
    with pytest.raises(DecapsulationFailed, match="it answers another request or was altered"):
        second_client.open_response(answer)


def test_truncated_oversized_and_altered_responses_are_refused() -> None:
    config = KeyConfig.parse(h("key_config"))
    _, exchange = encapsulate_request(config, h("request"), ephemeral_key=RFC_EPHEMERAL)
    published = h("encapsulated_response")
    with pytest.raises(OhttpError, match="response is 31 bytes, shorter than the minimum of 32"):
        exchange.open_response(published[:31])
    with pytest.raises(OhttpError, match="over the limit of 20 bytes"):
        exchange.open_response(published, max_bytes=20)
    for index in range(len(published)):
        altered = bytearray(published)
        altered[index] ^= 0x80
        with pytest.raises(DecapsulationFailed):
            exchange.open_response(bytes(altered))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01", "key configuration is 1 bytes, shorter than its header"),
        (bytes.fromhex("010010") + bytes(70), "key configuration 1 uses unsupported KEM 0x0010"),
        (bytes.fromhex(A["key_config"])[:20], "key configuration 1 is truncated in its public key"),
        (bytes.fromhex(A["key_config"])[:-1], "algorithms length says 8 bytes, 7 follow"),
        (bytes.fromhex(A["key_config"]) + b"\x00", "algorithms length says 8 bytes, 9 follow"),
        (
            bytes.fromhex(A["key_config"])[:35] + bytes.fromhex("0006000100010001"),
            "algorithms length must be a non-zero multiple of 4, got 6",
        ),
        (
            bytes.fromhex(A["key_config"])[:35] + bytes.fromhex("0000"),
            "algorithms length must be a non-zero multiple of 4, got 0",
        ),
    ],
)
def test_malformed_key_configurations_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(OhttpError, match=re.escape(message)):
        KeyConfig.parse(data)


def test_secrets_stay_out_of_reprs_and_errors() -> None:
    key = GatewayKey.from_private_bytes(1, h("skR"))
    _, client = encapsulate_request(key.config(), b"x")
    _, gateway = decapsulate_request(key, encapsulate_request(key.config(), b"x")[0])
    for thing in (key, client, gateway):
        text = repr(thing)
        assert A["skR"] not in text
        assert "secret=" not in text
        assert "private_key=" not in text
    with pytest.raises(OhttpError) as caught:
        GatewayKey.from_private_bytes(1, h("skR")[:31])
    assert A["skR"][:20] not in str(caught.value)
