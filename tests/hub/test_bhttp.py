"""Binary HTTP (RFC 9292): the RFC's own examples byte for byte, round trips, and hostile input."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.errors import DoorwardError
from hub.wire.bhttp import (
    BhttpError,
    InformationalResponse,
    Request,
    Response,
    decode_varint,
    encode_varint,
    parse_request,
    parse_response,
)

VECTORS = json.loads((Path(__file__).parent / "data" / "rfc9292_vectors.json").read_text())
FIG8 = bytes.fromhex(VECTORS["figure_8_known_length_request"])
FIG9 = bytes.fromhex(VECTORS["figure_9_indeterminate_length_request"])
FIG11 = bytes.fromhex(VECTORS["figure_11_indeterminate_length_response"])
FIG13 = bytes.fromhex(VECTORS["figure_13_known_length_response"])

HELLO = Request(
    method="GET",
    scheme="https",
    authority="",
    path="/hello.txt",
    headers=(
        ("user-agent", "curl/7.16.3 libcurl/7.16.3 OpenSSL/0.9.7l zlib/1.2.3"),
        ("host", "www.example.com"),
        ("accept-language", "en, mi"),
    ),
)
FIG11_RESPONSE = Response(
    status=200,
    headers=(
        ("date", "Mon, 27 Jul 2009 12:28:53 GMT"),
        ("server", "Apache"),
        ("last-modified", "Wed, 22 Jul 2009 19:15:56 GMT"),
        ("etag", '"34aa387-d-1568eb00"'),
        ("accept-ranges", "bytes"),
        ("content-length", "51"),
        ("vary", "Accept-Encoding"),
        ("content-type", "text/plain"),
    ),
    content=b"Hello World! My content includes a trailing CRLF.\r\n",
    informational=(
        InformationalResponse(102, (("running", '"sleep 15"'),)),
        InformationalResponse(
            103,
            (
                ("link", "</style.css>; rel=preload; as=style"),
                ("link", "</script.js>; rel=preload; as=script"),
            ),
        ),
    ),
)
FIG13_RESPONSE = Response(
    status=200, content=b"This content contains CRLF.\r\n", trailers=(("trailer", "text"),)
)


# --- RFC 9292 §5 --------------------------------------------------------------------------------


def test_figure_8_known_length_request_decodes_and_encodes_byte_for_byte() -> None:
    assert parse_request(FIG8) == HELLO
    assert HELLO.encode() == FIG8
    assert bytes(HELLO) == FIG8


def test_figure_9_indeterminate_length_request_with_padding() -> None:
    assert parse_request(FIG9) == HELLO
    assert HELLO.encode(indeterminate=True, padding=10) == FIG9


def test_figure_11_indeterminate_response_with_informational_responses() -> None:
    assert parse_response(FIG11) == FIG11_RESPONSE
    assert FIG11_RESPONSE.encode(indeterminate=True) == FIG11


def test_figure_13_known_length_response_with_trailer() -> None:
    assert parse_response(FIG13) == FIG13_RESPONSE
    assert FIG13_RESPONSE.encode() == FIG13


def test_truncated_empty_sections_mean_the_same_message() -> None:
    # RFC 9292 §3.8: Figure 8's empty content and trailers can be left out; Figure 9 can lose
    # its padding and its two empty terminators, but not the header section's terminator.
    for cut in (1, 2):
        assert parse_request(FIG8[:-cut]) == HELLO
    for cut in range(1, 13):
        assert parse_request(FIG9[:-cut]) == HELLO
    with pytest.raises(BhttpError, match="truncated"):
        parse_request(FIG9[:-13])


def test_minimal_messages_of_rfc_9458_appendix_a() -> None:
    request = Request("GET", "https", "example.com", "/")
    encoded = bytes.fromhex("00034745540568747470730b6578616d706c652e636f6d012f")
    assert request.encode(truncate=True) == encoded
    assert parse_request(encoded) == request
    assert Response(200).encode(truncate=True) == bytes.fromhex("0140c8")
    assert parse_response(bytes.fromhex("0140c8")) == Response(200)


def test_varints_follow_rfc_9000_section_16() -> None:
    # RFC 9000 §A.1's sample encodings.
    assert encode_varint(151288809941952652) == bytes.fromhex("c2197c5eff14e88c")
    assert encode_varint(494878333) == bytes.fromhex("9d7f3e7d")
    assert encode_varint(15293) == bytes.fromhex("7bbd")
    assert encode_varint(37) == bytes.fromhex("25")
    assert decode_varint(bytes.fromhex("4025")) == (37, 2)  # non-minimal is still valid
    assert parse_request(b"\x40\x00" + FIG8[1:]) == HELLO
    with pytest.raises(BhttpError, match="2\\^62"):
        encode_varint(1 << 62)


# --- round trips -------------------------------------------------------------------------------

_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.!#$%&'*+^`|~", min_size=1)
_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40).map(
    str.strip
)
_fields = st.lists(st.tuples(_token, _value), max_size=6).map(tuple)
_path = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)
_requests = st.builds(
    Request,
    method=st.sampled_from(["GET", "POST", "DELETE", "PATCH"]),
    scheme=st.sampled_from(["https", "http"]),
    authority=st.sampled_from(["", "doorbell.local:8443", "[::1]:8443"]),
    path=_path,
    headers=_fields,
    content=st.binary(max_size=300),
    trailers=_fields,
)
_responses = st.builds(
    Response,
    status=st.integers(200, 599),
    headers=_fields,
    content=st.binary(max_size=300),
    trailers=_fields,
    informational=st.lists(
        st.builds(InformationalResponse, status=st.integers(100, 199), headers=_fields),
        max_size=2,
    ).map(tuple),
)
_framing = st.fixed_dictionaries(
    {"indeterminate": st.booleans(), "truncate": st.booleans(), "padding": st.integers(0, 20)}
)


@settings(max_examples=200, deadline=None)
@given(_requests, _framing)
def test_requests_round_trip_in_every_framing(request: Request, framing: dict[str, object]) -> None:
    assert parse_request(request.encode(**framing)) == request  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(_responses, _framing)
def test_responses_round_trip_in_every_framing(
    response: Response, framing: dict[str, object]
) -> None:
    assert parse_response(response.encode(**framing)) == response  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_bhttp_error(data: bytes) -> None:
    for parse in (parse_request, parse_response):
        with contextlib.suppress(BhttpError):
            parse(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([FIG8, FIG9, FIG11, FIG13]), st.data())
def test_mutated_examples_decode_or_raise_bhttp_error(base: bytes, data: st.DataObject) -> None:
    mutated = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    for parse in (parse_request, parse_response):
        with contextlib.suppress(BhttpError):
            parse(bytes(mutated[:cut]))


# --- hostile and invalid messages --------------------------------------------------------------


def _raw_request(
    fields: list[tuple[bytes, bytes]], *, path: bytes = b"/x", tail: bytes = b""
) -> bytes:
    def lp(raw: bytes) -> bytes:
        return encode_varint(len(raw)) + raw

    section = b"".join(lp(name) + lp(value) for name, value in fields)
    return b"\x00" + lp(b"GET") + lp(b"https") + lp(b"") + lp(path) + lp(section) + tail


def test_bhttp_error_is_a_doorward_error() -> None:
    assert issubclass(BhttpError, DoorwardError)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "message truncated: framing indicator missing"),
        (b"\x04", "framing indicator 4 is not a request"),
        (b"\x01" + FIG8[1:], "framing indicator 1 is not a request"),
        (FIG8[:8], "message truncated: scheme claims 5 bytes but 2 remain"),
        (FIG8[:40], "message truncated: header section claims 108 bytes but 15 remain"),
        (b"\x00\x40", "message truncated: method length is a 2-byte integer but 1 bytes remain"),
        (
            b"\x00\xff\xff\xff\xff\xff\xff\xff\xff",
            "message truncated: method claims 4611686018427387903 bytes but 0 remain",
        ),
        (
            bytes.fromhex("000347455405687474707300012f") + bytes.fromhex("bfffffff"),
            "message truncated: header section claims 1073741823 bytes but 0 remain",
        ),
        (_raw_request([(b":method", b"POST")]), "header field name ':method': pseudo-fields"),
        (
            _raw_request([(b"Accept", b"*/*")]),
            "header field name 'Accept' must be a lowercase token",
        ),
        (
            _raw_request([(b"bad name", b"x")]),
            "header field name 'bad name' must be a lowercase token",
        ),
        (_raw_request([(b"x", b"a\r\nb: c")]), "header field 'x': value contains CR, LF or NUL"),
        (_raw_request([(b"x", b"a\x00b")]), "header field 'x': value contains CR, LF or NUL"),
        (
            _raw_request([(b"x", b" a")]),
            "header field 'x': value has leading or trailing whitespace",
        ),
        (_raw_request([(b"", b"x")]), "header field name is empty"),
        (_raw_request([], path=b"/a b"), "path '/a b' contains a space or control character"),
        (_raw_request([], path=b""), "path must not be empty"),
        (_raw_request([], path="/é".encode()), "path must be ASCII"),
        (_raw_request([], tail=b"\x00\x00\x00\x01"), "padding must be zero bytes"),
    ],
)
def test_invalid_requests_are_refused_with_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(BhttpError, match="^" + _escape(message)):
        parse_request(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (FIG8, "framing indicator 0 is not a response"),
        (bytes.fromhex("01"), "message truncated: status code missing"),
        (bytes.fromhex("0140660772756e6e696e67"), "message truncated"),
        (bytes.fromhex("014066"), "message ends after informational status 102"),
        (bytes.fromhex("014063"), "status code must be 100-599, got 99"),
        (bytes.fromhex("014258"), "status code must be 100-599, got 600"),
        (FIG13[:-3], "message truncated: trailer section claims 13 bytes but 10 remain"),
        (bytes.fromhex("0340c8000001780161"), "message truncated: trailer name length missing"),
        (
            bytes.fromhex("0340c80005"),
            "message truncated: content chunk claims 5 bytes but 0 remain",
        ),
    ],
)
def test_invalid_responses_are_refused_with_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(BhttpError, match="^" + _escape(message)):
        parse_response(data)


def test_message_size_limit_is_checked_before_decoding() -> None:
    with pytest.raises(BhttpError, match=f"message is {len(FIG8)} bytes, over the limit of 100"):
        parse_request(FIG8, max_message_bytes=100)


def test_field_count_limit_covers_every_section() -> None:
    many = tuple((f"x-{i}", "v") for i in range(10))
    encoded = Request("GET", "https", "", "/", headers=many, trailers=many).encode()
    assert len(parse_request(encoded, max_fields=20).trailers) == 10
    with pytest.raises(BhttpError, match="too many field lines"):
        parse_request(encoded, max_fields=19)
    with pytest.raises(BhttpError, match="too many field lines"):
        parse_request(
            Request("GET", "https", "", "/", headers=many).encode(indeterminate=True), max_fields=5
        )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Request("G T", "https", "", "/"), "method 'G T' must be a non-empty token"),
        (lambda: Request("GET", "ht tp", "", "/"), "scheme 'ht tp' must be a URI scheme"),
        (lambda: Request("GET", "https", "a\nb", "/"), "authority 'a\\nb' contains a space"),
        (lambda: Request("GET", "https", "", "/", (("X-Up", "1"),)), "header field name 'X-Up'"),
        (lambda: Request("GET", "https", "", "/", (("x", "é€"),)), "header field 'x': names must"),
        (lambda: Response(101), "final status must be 200-599, got 101"),
        (lambda: InformationalResponse(200), "informational status must be 100-199, got 200"),
        (lambda: Response(200).encode(padding=-1), "padding must be zero or more bytes"),
    ],
)
def test_encoder_refuses_what_the_decoder_would_refuse(build: object, message: str) -> None:
    with pytest.raises(BhttpError, match="^" + _escape(message)):
        build()  # type: ignore[operator]


def _escape(text: str) -> str:
    return re.escape(text)
