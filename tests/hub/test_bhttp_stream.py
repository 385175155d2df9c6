"""Indeterminate-length Binary HTTP responses written and read piece by piece."""

from __future__ import annotations

import pytest

from hub.wire.bhttp import BhttpError, Response, parse_response
from hub.wire.bhttp_stream import (
    RESPONSE_END,
    ResponseReader,
    encode_content,
    encode_response_head,
)

HEADERS = (("content-type", "application/octet-stream"), ("x-payload-sha256", "ab" * 32))


def _message(pieces: list[bytes], headers: tuple[tuple[str, str], ...] = HEADERS) -> bytes:
    return encode_response_head(200, headers) + b"".join(map(encode_content, pieces)) + RESPONSE_END


def _read(data: bytes, step: int) -> tuple[ResponseReader, bytes]:
    reader = ResponseReader()
    out = bytearray()
    for i in range(0, len(data), step):
        for piece in reader.feed(data[i : i + step]):
            out += piece
    reader.finish()
    return reader, bytes(out)


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_written_in_pieces_read_in_any_split(step: int) -> None:
    pieces = [b"a" * 100, bytes(range(256)) * 3, b"z"]
    data = _message(pieces)
    reader, content = _read(data, step)
    assert reader.head == Response(200, HEADERS)
    assert content == b"".join(pieces)
    # The same bytes are an ordinary RFC 9292 message.
    assert parse_response(data) == Response(200, HEADERS, b"".join(pieces))


def test_a_head_alone_is_a_whole_message_and_informational_responses_pass() -> None:
    reader, content = _read(encode_response_head(204, ()), 2)
    assert reader.head == Response(204)
    assert content == b""
    early = b"\x03\x40\x67\x04link\x01x\x00" + encode_response_head(200, ())[1:] + RESPONSE_END
    reader, _ = _read(early, 1)
    assert reader.head is not None
    assert reader.head.informational[0].status == 103


def test_a_response_cut_inside_its_content_is_refused() -> None:
    data = _message([b"x" * 50, b"y" * 50])
    for cut in (len(data) - 2, len(data) - 30, len(data) - 60):
        reader = ResponseReader()
        reader.feed(data[:cut])
        with pytest.raises(BhttpError, match="ended inside its content"):
            reader.finish()
    reader = ResponseReader()
    reader.feed(data[:5])
    with pytest.raises(BhttpError, match="before its header section was whole"):
        reader.finish()


def test_content_length_is_held_to() -> None:
    headers = (("content-length", "10"),)
    with pytest.raises(BhttpError, match="longer than its content-length of 10"):
        _read(_message([b"x" * 11], headers), 4)
    with pytest.raises(BhttpError, match="content is 9 bytes, its content-length says 10"):
        _read(_message([b"x" * 9], headers), 4)
    reader, content = _read(_message([b"x" * 4, b"x" * 6], headers), 4)
    assert reader.content_length == 10
    assert content == b"x" * 10
    with pytest.raises(BhttpError, match="not one plain number"):
        _read(_message([b"x"], (("content-length", "-1"),)), 4)


def test_hostile_heads_are_refused() -> None:
    reader = ResponseReader(max_head_bytes=100)
    with pytest.raises(BhttpError, match="head is larger than 100 bytes"):
        reader.feed(b"\x03\x40\xc8" + b"\x01a\x40\xff" + b"v" * 200)
    with pytest.raises(BhttpError, match="not an indeterminate-length response"):
        ResponseReader().feed(b"\x01\x40\xc8\x00\x00")
    with pytest.raises(BhttpError, match="must be a lowercase token"):
        ResponseReader().feed(b"\x03\x40\xc8\x01A\x01v\x00")
    with pytest.raises(BhttpError, match="too many field lines"):
        ResponseReader(max_fields=2).feed(b"\x03\x40\xc8" + b"\x01a\x01v" * 3 + b"\x00")
    with pytest.raises(BhttpError, match="padding"):
        ResponseReader().feed(_message([b"x"]) + b"\x00\x01")
    with pytest.raises(BhttpError, match="must not be empty"):
        encode_content(b"")
