"""The age v1 header: stanzas, the MAC line, strict base64, and caps against hostile input."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.errors import HeaderError

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_LINE_BYTES",
    "MAX_STANZAS",
    "Header",
    "Stanza",
    "b64_decode",
    "b64_encode",
    "header_mac",
    "read_header_lines",
]

VERSION_LINE = b"age-encryption.org/v1\n"
_VERSION_PREFIX = b"age-encryption.org/"
_MAC_PREFIX = b"---"

# Caps on what a hostile file can make us read or hold before the MAC can be checked.
# A hybrid stanza's argument line is 1,512 bytes, so 4 KiB lines leave room for plugin stanzas.
MAX_LINE_BYTES = 4096
# Native stanza bodies are 32 bytes; a stanza body beyond 4 KiB can only be a memory attack.
MAX_BODY_BYTES = 4096
# 256 stanzas covers any household of owners; "thousands of stanzas" is a CPU attack
# (each X25519 or ML-KEM stanza costs a key agreement to try).
MAX_STANZAS = 256
# 256 hybrid stanzas take about 410 KB; 512 KiB bounds the whole header with that headroom.
MAX_HEADER_BYTES = 512 * 1024

_B64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_BODY_COLUMNS = 64


def b64_encode(data: bytes) -> bytes:
    """Unpadded standard base64, as the age header uses it."""
    return base64.b64encode(data).rstrip(b"=")


def b64_decode(text: bytes, what: str) -> bytes:
    """Decode canonical unpadded base64 or raise HeaderError naming `what`."""
    if not _B64_CHARS.issuperset(text) or len(text) % 4 == 1:
        raise HeaderError(f"{what} is not valid unpadded base64")
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise HeaderError(f"{what} is not valid unpadded base64") from exc
    if b64_encode(data) != text:
        raise HeaderError(f"{what} is not canonical base64 (stray low bits)")
    return data


def header_mac(file_key: bytes, mac_input: bytes) -> bytes:
    """HMAC-SHA-256 over the header up to `---`, keyed by HKDF(file key, info "header")."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"header").derive(file_key)
    return hmac.new(key, mac_input, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Stanza:
    """One recipient stanza: its type (first argument), further arguments and decoded body."""

    type: str
    args: tuple[str, ...]
    body: bytes

    def __post_init__(self) -> None:
        for arg in (self.type, *self.args):
            if not arg or any(not 0x21 <= ord(c) <= 0x7E for c in arg):
                raise ValueError(f"stanza arguments must be non-empty printable ASCII, got {arg!r}")

    def __bytes__(self) -> bytes:
        line = " ".join((self.type, *self.args)).encode("ascii")
        body = b64_encode(self.body)
        lines = [body[i : i + _BODY_COLUMNS] for i in range(0, len(body), _BODY_COLUMNS)]
        if not lines or len(lines[-1]) == _BODY_COLUMNS:
            lines.append(b"")  # the body always ends with a line shorter than 64 columns
        return b"-> " + line + b"\n" + b"\n".join(lines) + b"\n"


@dataclass(frozen=True, slots=True)
class Header:
    """A parsed age v1 header: its stanzas and the 32-byte MAC."""

    stanzas: tuple[Stanza, ...]
    mac: bytes

    @classmethod
    def parse(cls, data: bytes) -> Header:
        """Parse a complete header (version line through MAC line, nothing after it)."""
        pos = 0

        def readline(limit: int) -> bytes:
            nonlocal pos
            end = data.find(b"\n", pos, pos + limit)
            stop = min(len(data), pos + limit) if end < 0 else end + 1
            line = data[pos:stop]
            pos = stop
            return line

        header = read_header_lines(readline)
        if pos != len(data):
            raise HeaderError("unexpected data after the header MAC line")
        return header

    @property
    def stanza_types(self) -> tuple[str, ...]:
        """The type of each stanza, in order."""
        return tuple(s.type for s in self.stanzas)

    def mac_input(self) -> bytes:
        """The bytes the MAC covers: everything up to and including `---`."""
        return VERSION_LINE + b"".join(bytes(s) for s in self.stanzas) + _MAC_PREFIX

    def __bytes__(self) -> bytes:
        return self.mac_input() + b" " + b64_encode(self.mac) + b"\n"


def read_header_lines(readline: Callable[[int], bytes]) -> Header:
    """Parse a header from `readline(limit)` calls, reading no further than its MAC line."""
    total = 0

    def next_line() -> bytes:
        nonlocal total
        line = readline(MAX_LINE_BYTES + 1)
        total += len(line)
        if total > MAX_HEADER_BYTES:
            raise HeaderError(
                f"header is larger than {MAX_HEADER_BYTES} bytes; refusing to read on"
            )
        if not line.endswith(b"\n"):
            if len(line) > MAX_LINE_BYTES:
                raise HeaderError(f"header line is longer than {MAX_LINE_BYTES} bytes")
            raise HeaderError("header ends before its MAC line: the file is truncated or not age")
        return line[:-1]

    first = next_line()
    if first + b"\n" != VERSION_LINE:
        if first.startswith(_VERSION_PREFIX):
            raise HeaderError(
                f"unsupported age version {first[len(_VERSION_PREFIX) :][:32]!r}; "
                "only age-encryption.org/v1 is supported"
            )
        raise HeaderError("not an age file: the first line is not age-encryption.org/v1")
    stanzas: list[Stanza] = []
    while True:
        line = next_line()
        if line.startswith(b"-> "):
            if len(stanzas) >= MAX_STANZAS:
                raise HeaderError(f"header has more than {MAX_STANZAS} stanzas")
            stanzas.append(_read_stanza(line, next_line))
        elif line.startswith(_MAC_PREFIX):
            if not stanzas:
                raise HeaderError("header has no recipient stanzas")
            if not line.startswith(b"--- ") or len(line) != 47:
                raise HeaderError("malformed MAC line: expected '--- ' and 43 base64 characters")
            return Header(tuple(stanzas), b64_decode(line[4:], "header MAC"))
        else:
            raise HeaderError("malformed header line: expected a stanza ('-> ') or MAC ('---')")


def _read_stanza(arg_line: bytes, next_line: Callable[[], bytes]) -> Stanza:
    args = arg_line[3:].split(b" ")
    if any(not a or any(not 0x21 <= c <= 0x7E for c in a) for a in args):
        raise HeaderError("malformed stanza: empty argument or non-printable character")
    body_lines: list[bytes] = []
    size = 0
    while True:
        line = next_line()
        if len(line) > _BODY_COLUMNS:
            raise HeaderError("malformed stanza: a body line is longer than 64 columns")
        size += len(line)
        if size * 3 // 4 > MAX_BODY_BYTES:
            raise HeaderError(f"stanza body is larger than {MAX_BODY_BYTES} bytes")
        if not _B64_CHARS.issuperset(line):
            raise HeaderError(
                "malformed stanza: body is not base64 or the final body line is missing"
            )
        body_lines.append(line)
        if len(line) < _BODY_COLUMNS:
            break
    body = b64_decode(b"".join(body_lines), "stanza body")
    text = [a.decode("ascii") for a in args]
    return Stanza(text[0], tuple(text[1:]), body)
