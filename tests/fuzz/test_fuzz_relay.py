"""Fuzz what the relay hands the doorbell and the phone from the broker: Binary HTTP (RFC 9292)
requests and responses, Oblivious HTTP (RFC 9458) encapsulated requests and responses, and key
configurations. Each parser returns a value or raises its documented error (``BhttpError``,
``OhttpError``), within memory bounded by its input."""

from __future__ import annotations

import pytest

from hub.wire import bhttp, ohttp
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
