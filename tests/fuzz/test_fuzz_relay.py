"""Fuzz what the relay hands the doorbell and the phone from the broker: Binary HTTP (RFC 9292)
requests and responses (whole, and read piece by piece), Oblivious HTTP (RFC 9458) encapsulated
requests and responses, their chunked forms (draft-ietf-ohai-chunked-ohttp), and key
configurations. Each parser returns a value or raises its documented error (``BhttpError``,
``OhttpError``), within memory bounded by its input."""

from __future__ import annotations

import pytest

from hub.wire import bhttp, bhttp_stream, ohttp, ohttp_chunked
from hub.wire.ohttp_pq import PqGatewayKey
from hub.wire.relay_keys import RelayKeys
from tests.fuzz.kit import bytes_target, parse_or_refuse

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.timeout(120)]

REQUEST = bhttp.Request(
    method="POST",
    scheme="https",
    authority="doorbell.local:8443",
    path="/requests",
    headers=(("content-type", "application/json"), ("signature", "sig1=:AAAA:")),
    content=b'{"token": "x"}',
)
RESPONSE = bhttp.Response(
    status=200, headers=(("content-type", "application/json"),), content=b"{}"
)
KEY = ohttp.GatewayKey.from_private_bytes(1, bytes(range(1, 33)))
SEALED, CLIENT = ohttp.encapsulate_request(KEY.config(), bytes(REQUEST))
_, GATEWAY = ohttp.decapsulate_request(KEY, SEALED)
ANSWER = GATEWAY.seal_response(bytes(RESPONSE))
CHUNKED, CHUNKED_CLIENT = ohttp_chunked.encapsulate_request(KEY.config(), [bytes(REQUEST)])
_, CHUNKED_GATEWAY = ohttp_chunked.decapsulate_request(KEY, CHUNKED)
_SEALER = CHUNKED_GATEWAY.sealer()
STREAMED = bhttp_stream.encode_response_head(200, RESPONSE.headers) + bhttp_stream.encode_content(
    b"{}"
)
CHUNKED_ANSWER = (
    _SEALER.nonce + _SEALER.seal(STREAMED) + _SEALER.seal(bhttp_stream.RESPONSE_END, final=True)
)


@bytes_target([bytes(REQUEST), REQUEST.encode(indeterminate=True)], share=2)
def test_binary_http_request(data: bytes) -> None:
    parse_or_refuse(lambda: bhttp.parse_request(data), (bhttp.BhttpError,), input_size=len(data))


@bytes_target([bytes(RESPONSE), RESPONSE.encode(indeterminate=True)], share=2)
def test_binary_http_response(data: bytes) -> None:
    parse_or_refuse(lambda: bhttp.parse_response(data), (bhttp.BhttpError,), input_size=len(data))


@bytes_target([SEALED], share=1)
def test_encapsulated_request(data: bytes) -> None:
    parse_or_refuse(
        lambda: ohttp.decapsulate_request(KEY, data), (ohttp.OhttpError,), input_size=len(data)
    )


@bytes_target([ANSWER], share=1)
def test_encapsulated_response(data: bytes) -> None:
    parse_or_refuse(lambda: CLIENT.open_response(data), (ohttp.OhttpError,), input_size=len(data))


@bytes_target([bytes(KEY.config())], share=1)
def test_key_config(data: bytes) -> None:
    parse_or_refuse(lambda: ohttp.KeyConfig.parse(data), (ohttp.OhttpError,), input_size=len(data))


@bytes_target([bytes(RelayKeys(KEY.config(), PqGatewayKey.generate(2).config()))], share=1)
def test_relay_key_list(data: bytes) -> None:
    parse_or_refuse(lambda: RelayKeys.parse(data), (ohttp.OhttpError,), input_size=len(data))


@bytes_target([STREAMED + bhttp_stream.RESPONSE_END], share=2)
def test_binary_http_response_read_piece_by_piece(data: bytes) -> None:
    def read() -> int:
        reader = bhttp_stream.ResponseReader()
        size = 0
        for start in range(0, len(data), 7):
            size += sum(map(len, reader.feed(data[start : start + 7])))
        reader.finish()
        return size

    parse_or_refuse(read, (bhttp.BhttpError,), input_size=len(data))


@bytes_target([CHUNKED], share=1)
def test_chunked_encapsulated_request(data: bytes) -> None:
    parse_or_refuse(
        lambda: ohttp_chunked.decapsulate_request(KEY, data),
        (ohttp.OhttpError,),
        input_size=len(data),
    )


@bytes_target([CHUNKED_ANSWER], share=1)
def test_chunked_encapsulated_response(data: bytes) -> None:
    parse_or_refuse(
        lambda: CHUNKED_CLIENT.opener().open_stream(data), (ohttp.OhttpError,), input_size=len(data)
    )
