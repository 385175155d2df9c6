"""Binary HTTP messages (RFC 9292): the requests and responses that travel through the relay.

A :class:`Request` or :class:`Response` is a plain record. ``encode()`` writes the known-length
form (RFC 9292 §3.1), or the indeterminate-length form on request (§3.2), optionally dropping
empty trailing sections (§3.8) and adding zero padding. :func:`parse_request` and
:func:`parse_response` read either form.

Decoding treats every input as hostile. The whole message is refused above
``max_message_bytes`` before anything is read; every length is checked against what is left of
the input before a byte is taken, so no length field can make the decoder allocate more than the
message itself; the number of field lines is capped (``max_fields``). Anything RFC 9292 §4 calls
invalid is refused with a :class:`BhttpError` naming the part at fault: a bad framing indicator,
a truncated section, a field name that is not a lowercase token, a field value with CR, LF or
NUL, non-zero padding.

Field names are lowercase strings; field values are strings whose characters are the octets of
the value (latin-1), so any value HTTP allows survives a round trip unchanged.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from crypto.errors import DoorwardError

__all__ = [
    "DEFAULT_MAX_FIELDS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "BhttpError",
    "Fields",
    "InformationalResponse",
    "Request",
    "Response",
    "decode_varint",
    "encode_varint",
    "parse_request",
    "parse_response",
]

DEFAULT_MAX_MESSAGE_BYTES = 1 << 20  # a relayed API call; large bodies go by presigned URL
DEFAULT_MAX_FIELDS = 256  # header, trailer and informational field lines together

Fields = tuple[tuple[str, str], ...]

_VARINT_MAX = (1 << 62) - 1
# RFC 9292 §3.3.
_KNOWN_REQUEST, _KNOWN_RESPONSE, _INDETERMINATE_REQUEST, _INDETERMINATE_RESPONSE = 0, 1, 2, 3
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_TCHAR_ANY_CASE = _TCHAR | frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_SCHEME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")
_FORBIDDEN_IN_VALUE = frozenset(b"\x00\r\n")  # RFC 9110 §5.5


class BhttpError(DoorwardError):
    """A binary HTTP message is malformed, truncated, too large, or cannot be encoded."""


def encode_varint(value: int) -> bytes:
    """The shortest RFC 9000 §16 variable-length integer encoding of ``value``."""
    if value < 0 or value > _VARINT_MAX:
        raise BhttpError(f"integer must be between 0 and 2^62-1, got {value}")
    if value < 1 << 6:
        return value.to_bytes(1, "big")
    if value < 1 << 14:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 1 << 30:
        return (value | 0x8000_0000).to_bytes(4, "big")
    return (value | 0xC000_0000_0000_0000).to_bytes(8, "big")


def decode_varint(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Read one variable-length integer at ``offset``: (value, offset after it)."""
    reader = _Reader(data, offset)
    return reader.varint("integer"), reader.pos


@dataclass(frozen=True, slots=True)
class InformationalResponse:
    """A 1xx response that precedes the final response (RFC 9292 §3.5.1)."""

    status: int
    headers: Fields = ()

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 199:
            raise BhttpError(f"informational status must be 100-199, got {self.status}")
        _check_fields(self.headers, "informational header")


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request: control data (RFC 9292 §3.4), header fields, content and trailer fields."""

    method: str
    scheme: str
    authority: str
    path: str
    headers: Fields = ()
    content: bytes = b""
    trailers: Fields = ()

    def __post_init__(self) -> None:
        _check_control(self.method, self.scheme, self.authority, self.path)
        _check_fields(self.headers, "header")
        _check_fields(self.trailers, "trailer")

    def encode(
        self, *, indeterminate: bool = False, truncate: bool = False, padding: int = 0
    ) -> bytes:
        """The binary form: known-length unless ``indeterminate``; ``truncate`` drops empty tail sections."""
        out = bytearray(encode_varint(_INDETERMINATE_REQUEST if indeterminate else _KNOWN_REQUEST))
        for part in (self.method, self.scheme, self.authority, self.path):
            out += _length_prefixed(part.encode("ascii"))
        _encode_sections(out, self.headers, self.content, self.trailers, indeterminate, truncate)
        return _pad(out, padding)

    def __bytes__(self) -> bytes:
        return self.encode()


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response: informational responses, then the final status, fields and content."""

    status: int
    headers: Fields = ()
    content: bytes = b""
    trailers: Fields = ()
    informational: tuple[InformationalResponse, ...] = ()

    def __post_init__(self) -> None:
        # RFC 9292 §3.5: a final status is 200-599 (1xx are informational responses).
        if not 200 <= self.status <= 599:
            raise BhttpError(f"final status must be 200-599, got {self.status}")
        _check_fields(self.headers, "header")
        _check_fields(self.trailers, "trailer")

    def encode(
        self, *, indeterminate: bool = False, truncate: bool = False, padding: int = 0
    ) -> bytes:
        """The binary form: known-length unless ``indeterminate``; ``truncate`` drops empty tail sections."""
        indicator = _INDETERMINATE_RESPONSE if indeterminate else _KNOWN_RESPONSE
        out = bytearray(encode_varint(indicator))
        for info in self.informational:
            out += encode_varint(info.status)
            _encode_fields(out, info.headers, indeterminate)
        out += encode_varint(self.status)
        _encode_sections(out, self.headers, self.content, self.trailers, indeterminate, truncate)
        return _pad(out, padding)

    def __bytes__(self) -> bytes:
        return self.encode()


def parse_request(
    data: bytes,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_fields: int = DEFAULT_MAX_FIELDS,
) -> Request:
    """Decode a binary HTTP request in either framing; raise :class:`BhttpError` if it is invalid."""
    reader = _start(data, max_message_bytes, max_fields)
    indicator = reader.varint("framing indicator")
    if indicator not in (_KNOWN_REQUEST, _INDETERMINATE_REQUEST):
        raise BhttpError(f"framing indicator {indicator} is not a request (0 or 2)")
    indeterminate = indicator == _INDETERMINATE_REQUEST
    method = reader.text("method")
    scheme = reader.text("scheme")
    authority = reader.text("authority")
    path = reader.text("path")
    _check_control(method, scheme, authority, path)
    headers, content, trailers = _read_sections(reader, indeterminate)
    return Request(method, scheme, authority, path, headers, content, trailers)


def parse_response(
    data: bytes,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_fields: int = DEFAULT_MAX_FIELDS,
) -> Response:
    """Decode a binary HTTP response in either framing; raise :class:`BhttpError` if it is invalid."""
    reader = _start(data, max_message_bytes, max_fields)
    indicator = reader.varint("framing indicator")
    if indicator not in (_KNOWN_RESPONSE, _INDETERMINATE_RESPONSE):
        raise BhttpError(f"framing indicator {indicator} is not a response (1 or 3)")
    indeterminate = indicator == _INDETERMINATE_RESPONSE
    informational: list[InformationalResponse] = []
    while True:
        status = reader.varint("status code")
        if 100 <= status <= 199:
            if reader.at_end():
                raise BhttpError(f"message ends after informational status {status}")
            fields = reader.field_section("informational header", indeterminate)
            informational.append(InformationalResponse(status, fields))
            continue
        if not 200 <= status <= 599:
            raise BhttpError(f"status code must be 100-599, got {status}")
        break
    headers, content, trailers = _read_sections(reader, indeterminate)
    return Response(status, headers, content, trailers, tuple(informational))


class _Reader:
    """A cursor over untrusted bytes; every read is checked against what remains."""

    __slots__ = ("data", "fields_left", "pos")

    def __init__(self, data: bytes, pos: int = 0, fields_left: int = DEFAULT_MAX_FIELDS) -> None:
        self.data = data
        self.pos = pos
        self.fields_left = fields_left

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def varint(self, what: str) -> int:
        if self.at_end():
            raise BhttpError(f"message truncated: {what} missing")
        first = self.data[self.pos]
        size = 1 << (first >> 6)
        if self.pos + size > len(self.data):
            raise BhttpError(
                f"message truncated: {what} is a {size}-byte integer but "
                f"{len(self.data) - self.pos} bytes remain"
            )
        value = int.from_bytes(self.data[self.pos : self.pos + size], "big")
        self.pos += size
        return value & ((1 << (8 * size - 2)) - 1)

    def take(self, length: int, what: str) -> bytes:
        remaining = len(self.data) - self.pos
        # Checked before slicing: a hostile length never allocates more than the input.
        if length > remaining:
            raise BhttpError(
                f"message truncated: {what} claims {length} bytes but {remaining} remain"
            )
        chunk = self.data[self.pos : self.pos + length]
        self.pos += length
        return chunk

    def text(self, what: str) -> str:
        raw = self.take(self.varint(f"{what} length"), what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise BhttpError(f"{what} must be ASCII") from None

    def field_section(self, what: str, indeterminate: bool) -> Fields:
        if indeterminate:
            return self._field_lines(self, what, indeterminate=True)
        length = self.varint(f"{what} section length")
        section = _Reader(self.take(length, f"{what} section"), 0, self.fields_left)
        fields = self._field_lines(section, what, indeterminate=False)
        self.fields_left = section.fields_left
        return fields

    @staticmethod
    def _field_lines(reader: _Reader, what: str, *, indeterminate: bool) -> Fields:
        fields: list[tuple[str, str]] = []
        while True:
            if not indeterminate and reader.at_end():
                break
            name_length = reader.varint(f"{what} name length")
            if name_length == 0:
                if indeterminate:
                    break  # the Content Terminator ends an indeterminate-length section
                raise BhttpError(f"{what} field name is empty")
            if reader.fields_left <= 0:
                raise BhttpError("too many field lines in message")
            reader.fields_left -= 1
            name = reader.take(name_length, f"{what} field name")
            value = reader.take(reader.varint(f"{what} value length"), f"{what} field value")
            fields.append(_field(name, value, what))
        return tuple(fields)

    def content(self, indeterminate: bool) -> bytes:
        if not indeterminate:
            return self.take(self.varint("content length"), "content")
        chunks: list[bytes] = []
        while True:
            length = self.varint("content chunk length")
            if length == 0:
                return b"".join(chunks)
            chunks.append(self.take(length, "content chunk"))


def _start(data: bytes, max_message_bytes: int, max_fields: int) -> _Reader:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BhttpError(f"message must be bytes, got {type(data).__name__}")
    if len(data) > max_message_bytes:
        raise BhttpError(
            f"message is {len(data)} bytes, over the limit of {max_message_bytes} bytes"
        )
    return _Reader(bytes(data), 0, max_fields)


def _read_sections(reader: _Reader, indeterminate: bool) -> tuple[Fields, bytes, Fields]:
    # RFC 9292 §3.8: a message may end right after its control data or any later section;
    # the sections left out are empty.
    headers: Fields = ()
    content = b""
    trailers: Fields = ()
    if not reader.at_end():
        headers = reader.field_section("header", indeterminate)
    if not reader.at_end():
        content = reader.content(indeterminate)
    if not reader.at_end():
        trailers = reader.field_section("trailer", indeterminate)
    padding = reader.data[reader.pos :]
    if padding.count(0) != len(padding):
        raise BhttpError(
            f"padding must be zero bytes: {len(padding)} bytes follow the trailer section "
            "and not all are zero"
        )
    return headers, content, trailers


def _field(name: bytes, value: bytes, what: str) -> tuple[str, str]:
    shown = name[:40].decode("ascii", "replace")
    if not set(name) <= _TCHAR:
        if name[:1] == b":":
            raise BhttpError(f"{what} field name {shown!r}: pseudo-fields are not allowed")
        raise BhttpError(f"{what} field name {shown!r} must be a lowercase token")
    if _FORBIDDEN_IN_VALUE & set(value):
        raise BhttpError(f"{what} field {shown!r}: value contains CR, LF or NUL")
    if value[:1] in (b" ", b"\t") or value[-1:] in (b" ", b"\t"):
        raise BhttpError(f"{what} field {shown!r}: value has leading or trailing whitespace")
    return name.decode("ascii"), value.decode("latin-1")


def _check_fields(fields: Fields, what: str) -> None:
    for line in fields:
        if not (isinstance(line, tuple) and len(line) == 2):
            raise BhttpError(f"{what} fields must be (name, value) pairs, got {line!r:.60}")
        name, value = line
        if not name:
            raise BhttpError(f"{what} field name must not be empty")
        try:
            _field(name.encode("ascii"), value.encode("latin-1"), what)
        except UnicodeEncodeError:
            raise BhttpError(
                f"{what} field {name[:40]!r}: names must be ASCII and values latin-1 octets"
            ) from None


def _check_control(method: str, scheme: str, authority: str, path: str) -> None:
    def ascii_bytes(value: str, what: str) -> bytes:
        try:
            return value.encode("ascii")
        except UnicodeEncodeError:
            raise BhttpError(f"{what} must be ASCII") from None

    raw_method = ascii_bytes(method, "method")
    if not raw_method or not set(raw_method) <= _TCHAR_ANY_CASE:
        raise BhttpError(f"method {method[:20]!r} must be a non-empty token")
    raw_scheme = ascii_bytes(scheme, "scheme")
    if not raw_scheme or not set(raw_scheme) <= _SCHEME_CHARS or not raw_scheme[:1].isalpha():
        raise BhttpError(f"scheme {scheme[:20]!r} must be a URI scheme such as 'https'")
    # Control characters, spaces and DEL would let a request be split or rewritten when
    # the device replays it through an HTTP/1.1 parser.
    for value, what in ((authority, "authority"), (path, "path")):
        raw = ascii_bytes(value, what)
        if any(byte <= 0x20 or byte == 0x7F for byte in raw):
            raise BhttpError(f"{what} {value[:40]!r} contains a space or control character")
    if not path:
        raise BhttpError("path must not be empty (use '/' or '*')")


def _length_prefixed(raw: bytes) -> bytes:
    return encode_varint(len(raw)) + raw


def _encode_fields(out: bytearray, fields: Iterable[tuple[str, str]], indeterminate: bool) -> None:
    lines = bytearray()
    for name, value in fields:
        lines += _length_prefixed(name.encode("ascii"))
        lines += _length_prefixed(value.encode("latin-1"))
    if indeterminate:
        out += lines
        out += b"\x00"
    else:
        out += _length_prefixed(bytes(lines))


def _encode_sections(
    out: bytearray,
    headers: Fields,
    content: bytes,
    trailers: Fields,
    indeterminate: bool,
    truncate: bool,
) -> None:
    # RFC 9292 §3.8: with ``truncate`` the empty sections at the end are left out.
    keep = 3
    if truncate:
        keep = 3 if trailers else 2 if content else 1 if headers else 0
    if keep >= 1:
        _encode_fields(out, headers, indeterminate)
    if keep >= 2:
        if indeterminate:
            if content:
                out += _length_prefixed(content)
            out += b"\x00"
        else:
            out += _length_prefixed(content)
    if keep >= 3:
        _encode_fields(out, trailers, indeterminate)


def _pad(out: bytearray, padding: int) -> bytes:
    if padding < 0:
        raise BhttpError(f"padding must be zero or more bytes, got {padding}")
    out += bytes(padding)
    return bytes(out)
