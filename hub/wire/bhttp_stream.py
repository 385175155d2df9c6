"""Binary HTTP responses written and read as they go (RFC 9292 §3.2, indeterminate length).

A relayed download is too large to hold in memory: the device writes the response's head
(:func:`encode_response_head`), then each piece of content as it reads it
(:func:`encode_content`), then :data:`RESPONSE_END`; the client feeds whatever arrives to a
:class:`ResponseReader`, which gives the head as soon as it is whole and then the content piece
by piece. Nothing needs the whole message at once, and the pieces need not line up with the
chunks that carry them.

The reader treats its input as hostile, as :mod:`hub.wire.bhttp` does: the head is capped
(``max_head_bytes``, ``max_fields``), field names and values are checked the same way, a
``content-length`` in the head is held to (no more, and no less by the end), and a message that
ends inside its content is refused.

Pure: no I/O.
"""

from __future__ import annotations

import enum

from hub.wire.bhttp import (
    DEFAULT_MAX_FIELDS,
    BhttpError,
    Fields,
    InformationalResponse,
    Response,
    _check_fields,
    _field,
    encode_varint,
)

__all__ = ["RESPONSE_END", "ResponseReader", "encode_content", "encode_response_head"]

RESPONSE_END = b"\x00\x00"  # the content terminator, then an empty trailer section
DEFAULT_MAX_HEAD_BYTES = 64 * 1024
_INDETERMINATE_RESPONSE = 3


def encode_response_head(status: int, headers: Fields) -> bytes:
    """Framing indicator, final status and header section of an indeterminate-length response."""
    Response(status, headers)  # the same checks as a whole response
    out = bytearray(encode_varint(_INDETERMINATE_RESPONSE) + encode_varint(status))
    for name, value in headers:
        raw_name, raw_value = name.encode("ascii"), value.encode("latin-1")
        out += encode_varint(len(raw_name)) + raw_name + encode_varint(len(raw_value)) + raw_value
    out += b"\x00"
    return bytes(out)


def encode_content(piece: bytes) -> bytes:
    """One content chunk of an indeterminate-length message (never empty: that would end it)."""
    if not piece:
        raise BhttpError("a content chunk must not be empty (an empty one ends the content)")
    return encode_varint(len(piece)) + piece


class _State(enum.Enum):
    HEAD = "head"
    CONTENT = "content"
    CONTENT_DATA = "content data"
    TRAILERS = "trailers"
    PADDING = "padding"


class _NeedMore(Exception):
    """Not enough bytes yet (internal)."""


class ResponseReader:
    """Reads an indeterminate-length binary HTTP response incrementally: :meth:`feed` the bytes
    as they arrive, :attr:`head` once it is whole, then the content pieces :meth:`feed` returns,
    and :meth:`finish` at the end."""

    def __init__(
        self, *, max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES, max_fields: int = DEFAULT_MAX_FIELDS
    ) -> None:
        self._buf = bytearray()
        self._state = _State.HEAD
        self._remaining = 0
        self._max_head_bytes = max_head_bytes
        self._max_fields = max_fields
        self._content_started = False
        self.head: Response | None = None
        self.trailers: Fields = ()
        self.content_bytes = 0
        self.content_length: int | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes of the message; returns the content pieces they complete."""
        self._buf += data
        out: list[bytes] = []
        while self._buf:
            if self._state is _State.HEAD:
                if not self._read_head():
                    break
            elif self._state is _State.CONTENT:
                try:
                    length, used = _varint(self._buf, 0)
                except _NeedMore:
                    break
                del self._buf[:used]
                if length == 0:
                    self._state = _State.TRAILERS
                else:
                    self._content_started = True
                    self._remaining = length
                    self._state = _State.CONTENT_DATA
            elif self._state is _State.CONTENT_DATA:
                piece = bytes(self._buf[: self._remaining])
                del self._buf[: len(piece)]
                self._remaining -= len(piece)
                self.content_bytes += len(piece)
                if self.content_length is not None and self.content_bytes > self.content_length:
                    raise BhttpError(
                        f"the content is longer than its content-length of {self.content_length}"
                    )
                out.append(piece)
                if self._remaining == 0:
                    self._state = _State.CONTENT
            elif self._state is _State.TRAILERS:
                try:
                    self.trailers, used = self._fields(0, "trailer")
                except _NeedMore:
                    if len(self._buf) > self._max_head_bytes:
                        raise BhttpError(
                            f"the trailer section is larger than {self._max_head_bytes} bytes"
                        ) from None
                    break
                del self._buf[:used]
                self._state = _State.PADDING
            else:
                if self._buf.count(0) != len(self._buf):
                    raise BhttpError("padding after the trailer section must be zero bytes")
                self._buf.clear()
        return out

    def finish(self) -> None:
        """Raise :class:`BhttpError` unless the message ended where a message may end."""
        if self._state is _State.HEAD:
            raise BhttpError("the response ended before its header section was whole")
        if self._state is _State.CONTENT_DATA or (
            self._state is _State.CONTENT and (self._content_started or self._buf)
        ):
            raise BhttpError("the response ended inside its content: it was cut short")
        if self._state is _State.TRAILERS and self._buf:
            raise BhttpError("the response ended inside its trailer section")
        if self.content_length is not None and self.content_bytes != self.content_length:
            raise BhttpError(
                f"the content is {self.content_bytes} bytes, its content-length says "
                f"{self.content_length}"
            )

    # -- parsing ---------------------------------------------------------------------------

    def _read_head(self) -> bool:
        try:
            head, used = self._parse_head()
        except _NeedMore:
            if len(self._buf) > self._max_head_bytes:
                raise BhttpError(
                    f"the response head is larger than {self._max_head_bytes} bytes"
                ) from None
            return False
        del self._buf[:used]
        self.head = head
        lengths = [v for k, v in head.headers if k == "content-length"]
        if lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit() or len(lengths[0]) > 15:
                raise BhttpError(f"content-length {lengths[0][:20]!r} is not one plain number")
            self.content_length = int(lengths[0])
        self._state = _State.CONTENT
        return True

    def _parse_head(self) -> tuple[Response, int]:
        indicator, pos = _varint(self._buf, 0)
        if indicator != _INDETERMINATE_RESPONSE:
            raise BhttpError(
                f"framing indicator {indicator} is not an indeterminate-length response (3)"
            )
        informational: list[InformationalResponse] = []
        while True:
            status, pos = _varint(self._buf, pos)
            fields, pos = self._fields(pos, "header")
            if 100 <= status <= 199:
                informational.append(InformationalResponse(status, fields))
                continue
            if not 200 <= status <= 599:
                raise BhttpError(f"status code must be 100-599, got {status}")
            return Response(status, fields, informational=tuple(informational)), pos

    def _fields(self, pos: int, what: str) -> tuple[Fields, int]:
        fields: list[tuple[str, str]] = []
        while True:
            name_length, pos = _varint(self._buf, pos)
            if name_length == 0:
                _check_fields(tuple(fields), what)
                return tuple(fields), pos
            if len(fields) >= self._max_fields:
                raise BhttpError("too many field lines in message")
            name, pos = _take(self._buf, pos, name_length)
            value_length, pos = _varint(self._buf, pos)
            value, pos = _take(self._buf, pos, value_length)
            fields.append(_field(name, value, what))


def _varint(buf: bytearray, pos: int) -> tuple[int, int]:
    if pos >= len(buf):
        raise _NeedMore
    size = 1 << (buf[pos] >> 6)
    if pos + size > len(buf):
        raise _NeedMore
    value = int.from_bytes(buf[pos : pos + size], "big") & ((1 << (8 * size - 2)) - 1)
    return value, pos + size


def _take(buf: bytearray, pos: int, length: int) -> tuple[bytes, int]:
    if pos + length > len(buf):
        raise _NeedMore
    return bytes(buf[pos : pos + length]), pos + length
