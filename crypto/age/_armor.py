"""Strict PEM armor for age files (RFC 7468 section 3, label "AGE ENCRYPTED FILE")."""

from __future__ import annotations

import base64
import binascii
from typing import BinaryIO

from crypto.errors import HeaderError

__all__ = ["BEGIN", "END", "ArmorError", "ArmorWriter", "armor", "dearmor"]

BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
END = b"-----END AGE ENCRYPTED FILE-----"
_COLUMNS = 64
_LINE_BYTES = 48  # 48 bytes encode to one full 64-column line
_OUTSIDE_WHITESPACE = b" \t\r\n"


class ArmorError(HeaderError):
    """The ASCII armor around an age file is malformed."""


def _wrap(encoded: bytes) -> bytes:
    return b"".join(encoded[i : i + _COLUMNS] + b"\n" for i in range(0, len(encoded), _COLUMNS))


def armor(data: bytes) -> bytes:
    """Wrap a binary age file in PEM armor (LF line endings)."""
    return BEGIN + b"\n" + _wrap(base64.b64encode(data)) + END + b"\n"


def dearmor(text: bytes) -> bytes:
    """The binary age file inside strict PEM armor; whitespace is allowed only around it."""
    text = text.strip(_OUTSIDE_WHITESPACE)
    lines = text.split(b"\n")
    # Both LF and CRLF line endings are accepted (the age spec allows either).
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    if len(lines) < 2 or lines[0] != BEGIN:
        raise ArmorError("armor must start with '-----BEGIN AGE ENCRYPTED FILE-----'")
    if lines[-1] != END:
        raise ArmorError("armor must end with '-----END AGE ENCRYPTED FILE-----'")
    body = lines[1:-1]
    for line in body[:-1]:
        if len(line) != _COLUMNS:
            raise ArmorError("armor lines must be exactly 64 columns, except the last")
    if body and not 0 < len(body[-1]) <= _COLUMNS:
        raise ArmorError("the last armor line must hold 1 to 64 columns")
    encoded = b"".join(body)
    try:
        data = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ArmorError("armor body is not valid padded base64") from exc
    if base64.b64encode(data) != encoded:
        raise ArmorError("armor body is not canonical base64")
    return data


class ArmorWriter:
    """A write-only stream that armors what it is given onto `dst`; close() writes the END line."""

    __slots__ = ("_dst", "_pending", "_started")

    def __init__(self, dst: BinaryIO) -> None:
        self._dst = dst
        self._pending = bytearray()
        self._started = False

    def write(self, data: bytes) -> int:
        if not self._started:
            self._dst.write(BEGIN + b"\n")
            self._started = True
        self._pending += data
        whole = len(self._pending) // _LINE_BYTES * _LINE_BYTES
        if whole:
            self._dst.write(_wrap(base64.b64encode(self._pending[:whole])))
            del self._pending[:whole]
        return len(data)

    def close(self) -> None:
        if not self._started:
            self._dst.write(BEGIN + b"\n")
        self._dst.write(_wrap(base64.b64encode(self._pending)) + END + b"\n")
        self._pending.clear()
