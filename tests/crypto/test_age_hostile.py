"""Hostile input is refused with the expected error after reading a bounded amount."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator

import pytest

from crypto import age
from crypto.age._format import MAX_HEADER_BYTES, MAX_LINE_BYTES
from crypto.errors import HeaderError, PayloadError

IDENTITY = age.X25519Identity.generate()


class EndlessReader(io.RawIOBase):
    """A binary stream that serves `prefix` and then repeats `unit` forever, counting reads."""

    def __init__(self, prefix: bytes, unit: bytes) -> None:
        self._chunks: Iterator[bytes] = itertools.chain([prefix], itertools.repeat(unit))
        self._pending = b""
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            self._pending = next(self._chunks)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.consumed += size
        return size


def _decrypt(reader: EndlessReader) -> None:
    age.decrypt([IDENTITY], io.BufferedReader(reader, buffer_size=8192), io.BytesIO())


def test_endless_line_is_refused_after_one_line() -> None:
    reader = EndlessReader(b"age-encryption.org/v1\n-> X25519 ", b"A" * 65536)
    with pytest.raises(HeaderError) as info:
        _decrypt(reader)
    assert str(info.value) == f"header line is longer than {MAX_LINE_BYTES} bytes"
    assert reader.consumed < 64 * 1024


def test_no_newline_at_all() -> None:
    reader = EndlessReader(b"", b"\x00" * 65536)
    with pytest.raises(HeaderError, match="header line is longer than 4096 bytes"):
        _decrypt(reader)
    assert reader.consumed < 64 * 1024


def test_thousands_of_stanzas() -> None:
    stanza = b"-> X25519 " + b"A" * 43 + b"\n" + b"A" * 43 + b"\n"
    reader = EndlessReader(b"age-encryption.org/v1\n", stanza)
    with pytest.raises(HeaderError) as info:
        _decrypt(reader)
    assert str(info.value) == "header has more than 256 stanzas"
    assert reader.consumed < 257 * len(stanza) + 8192


def test_huge_base64_body() -> None:
    reader = EndlessReader(b"age-encryption.org/v1\n-> grease\n", b"A" * 64 + b"\n")
    with pytest.raises(HeaderError) as info:
        _decrypt(reader)
    assert str(info.value) == "stanza body is larger than 4096 bytes"
    assert reader.consumed < 16 * 1024


def test_oversized_header() -> None:
    # Stanzas under every other cap that together exceed the header cap.
    stanza = b"-> grease " + b"a" * 3000 + b"\n\n"
    reader = EndlessReader(b"age-encryption.org/v1\n", stanza)
    with pytest.raises(HeaderError) as info:
        _decrypt(reader)
    assert str(info.value) == (
        f"header is larger than {MAX_HEADER_BYTES} bytes; refusing to read on"
    )
    assert reader.consumed < MAX_HEADER_BYTES + 16 * 1024


def test_endless_payload_garbage_stops_at_the_first_chunk() -> None:
    header = age.split_header(age.encrypt_bytes([IDENTITY.recipient()], b"x"))[0]
    reader = EndlessReader(header + bytes(16), b"\xff" * 65536)
    out = io.BytesIO()
    with pytest.raises(PayloadError) as info:
        age.decrypt([IDENTITY], io.BufferedReader(reader), out)
    assert str(info.value) == (
        "payload chunk 0 failed authentication: the file is corrupt or truncated; "
        "only the preceding chunks were released"
    )
    assert out.getvalue() == b""
    assert reader.consumed < 4 * 65536


def test_limits_allow_real_files() -> None:
    """The caps leave room for a household: 64 hybrid owners fit in one header."""
    owners = [age.HybridIdentity.generate() for _ in range(64)]
    data = age.encrypt_bytes([o.recipient() for o in owners], b"clip")
    assert len(age.split_header(data)[0]) < MAX_HEADER_BYTES
    assert age.decrypt_bytes([owners[-1]], data) == b"clip"
