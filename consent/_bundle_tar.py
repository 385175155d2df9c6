"""The release bundle's tar stream, read with bounded sizes (POSIX.1-2001 pax / ustar, GNU names).

Python's ``tarfile`` reads a whole PAX or GNU long-name header into memory before looking at it,
so a device announcing a 512 MiB header makes the requester allocate it. This reader looks at each
512-byte header block first and refuses, from the sizes it announces, anything past
:class:`~consent.bundle.BundleLimits`: an extended header over a few KiB, more members than a
release can have, a stream longer than the bundle cap. Member data is never read here: each member
is handed over as a stream that yields exactly its announced size, and whatever the caller leaves
unread is skipped, never buffered.

Only what Doorward bundles use is accepted: regular files, per-file PAX headers (``path`` and
``size`` are honoured, other keys ignored) and GNU long names. Links, directories, devices, sparse
files and global PAX headers are refused. Every fault raises :class:`BundleInvalid`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from consent.bundle import BundleLimits
from consent.errors import BundleInvalid

__all__ = ["TarMember", "read_members"]

BLOCK = 512
_REGULAR = (b"0", b"\0")
_PAX = b"x"
_GNU_LONGNAME = b"L"
_EXTENDED = {_PAX: "PAX", _GNU_LONGNAME: "GNU long name", b"K": "GNU long link name"}
_REFUSED = {b"g": "a global PAX header", b"S": "a GNU sparse file"}
_SKIP_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class TarMember:
    """One regular file of the stream: its name, its announced size and a stream of its bytes
    (valid until the iteration moves on)."""

    name: str
    size: int
    stream: BinaryIO


def read_members(src: BinaryIO, limits: BundleLimits) -> Iterator[TarMember]:
    """Yield the regular files of the tar stream ``src`` in order, within ``limits``.

    Stops at the end-of-archive block; raises BundleInvalid for a malformed, truncated or
    oversized stream (checked before the bytes in question are read)."""
    reader = _Counted(src, limits.max_bundle_bytes)
    count = 0
    while True:
        block = reader.read_exact(BLOCK, "a tar header")
        if block == bytes(BLOCK):
            return  # end of archive (the second zero block and the padding need not be read)
        header, path, size = _member_header(reader, block, limits)
        count += 1
        if count > limits.max_members:
            raise BundleInvalid(f"bundle has more than {limits.max_members} files")
        name = path if path is not None else header.name
        size = size if size is not None else header.size
        if header.type not in _REGULAR:
            raise BundleInvalid(f"bundle member {name[:80]!r} is not a regular file")
        reader.reserve(_padded(size))
        stream = _MemberStream(reader, size)
        yield TarMember(name, size, io.BufferedReader(stream, _SKIP_CHUNK))
        stream.skip_rest()
        reader.read_exact(_padded(size) - size, "the padding of a tar member")


def _member_header(
    reader: _Counted, block: bytes, limits: BundleLimits
) -> tuple[_Header, str | None, int | None]:
    """Read the PAX and GNU long-name headers in front of a member, each bounded before it is
    read; return the member's own header and the path and size they set, if any."""
    path: str | None = None
    size: int | None = None
    seen: set[bytes] = set()
    while True:
        header = _Header.parse(block)
        if header.type in _REFUSED:
            raise BundleInvalid(f"bundle holds {_REFUSED[header.type]}, which bundles never use")
        if header.type not in _EXTENDED:
            return header, path, size
        what = _EXTENDED[header.type]
        if header.type in seen:
            raise BundleInvalid(f"bundle has two {what} headers in a row")
        seen.add(header.type)
        if header.size > limits.max_extended_header_bytes:
            raise BundleInvalid(
                f"bundle has a {what} header of {header.size} bytes; at most "
                f"{limits.max_extended_header_bytes} are allowed"
            )
        data = reader.read_exact(_padded(header.size), f"a {what} header")[: header.size]
        if header.type == _PAX:
            records = _pax_records(data)
            if "path" in records:
                path = records["path"]
            if "size" in records:
                size = _decimal(records["size"], "PAX size")
        elif header.type == _GNU_LONGNAME:
            path = _text(data.rstrip(b"\0"), "GNU long name")
        block = reader.read_exact(BLOCK, "a tar header")
        if block == bytes(BLOCK):
            raise BundleInvalid(f"bundle ends right after a {what} header")


@dataclass(frozen=True, slots=True)
class _Header:
    name: str
    size: int
    type: bytes

    @classmethod
    def parse(cls, block: bytes) -> _Header:
        stored = _octal(block[148:156], "header checksum")
        # The checksum field counts as eight spaces; old tars summed signed bytes.
        rest = block[:148] + b" " * 8 + block[156:]
        unsigned = sum(rest)
        signed = unsigned - 256 * sum(1 for b in rest if b > 127)
        if stored not in (unsigned, signed):
            raise BundleInvalid("bundle is not a readable tar stream: a header checksum is wrong")
        name = _text(block[0:100].split(b"\0", 1)[0], "member name")
        if block[257:262] == b"ustar" and block[263:265] == b"00":  # POSIX: prefix/name
            prefix = _text(block[345:500].split(b"\0", 1)[0], "member name prefix")
            if prefix:
                name = f"{prefix}/{name}"
        return cls(name, _size(block[124:136]), block[156:157])


class _Counted:
    """The source stream, with every byte counted against the bundle cap."""

    def __init__(self, src: BinaryIO, cap: int) -> None:
        self._src = src
        self._cap = cap
        self._read = 0

    def reserve(self, n: int) -> None:
        """Refuse now if ``n`` more bytes would pass the cap (before reading any of them)."""
        if self._read + n > self._cap:
            self._too_large()

    def read_exact(self, n: int, what: str) -> bytes:
        self.reserve(n)
        data = self._read_some(n)
        if len(data) != n:
            raise BundleInvalid(f"bundle is truncated: it ends inside {what}")
        return data

    def read_up_to(self, n: int) -> bytes:
        return self._read_some(n)

    def _read_some(self, n: int) -> bytes:
        parts = []
        left = n
        while left > 0:
            chunk = self._src.read(left)
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
        data = b"".join(parts)
        self._read += len(data)
        if self._read > self._cap:
            self._too_large()
        return data

    def _too_large(self) -> None:
        raise BundleInvalid(
            f"bundle is larger than {self._cap} bytes, the most this requester accepts "
            "(raise the limit with --max-size if the release is really that large)"
        )


class _MemberStream(io.RawIOBase):
    """Exactly ``size`` bytes of one member; a short source is a truncated bundle."""

    def __init__(self, reader: _Counted, size: int) -> None:
        self._reader = reader
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._left)
        if n == 0:
            return 0
        data = self._reader.read_up_to(n)
        if not data:
            raise BundleInvalid("bundle is truncated: it ends inside a member's data")
        view[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def skip_rest(self) -> None:
        while self._left > 0:
            data = self._reader.read_up_to(min(self._left, _SKIP_CHUNK))
            if not data:
                raise BundleInvalid("bundle is truncated: it ends inside a member's data")
            self._left -= len(data)


def _pax_records(data: bytes) -> dict[str, str]:
    """Parse ``LENGTH KEY=VALUE\\n`` records (POSIX.1-2001 pax, "pax Extended Header")."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 21)
        if space < 0:
            raise BundleInvalid("bundle has a malformed PAX header record")
        length = _decimal(data[pos:space].decode("ascii", "replace"), "PAX record length")
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1 : end] != b"\n":
            raise BundleInvalid("bundle has a malformed PAX header record")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise BundleInvalid("bundle has a malformed PAX header record")
        name = _text(key, "PAX key")
        if name.startswith("GNU.sparse."):
            raise BundleInvalid("bundle holds a GNU sparse file, which bundles never use")
        records[name] = _text(value, f"PAX {name[:20]}")
        pos = end
    return records


def _size(field: bytes) -> int:
    if field[:1] == b"\x80":  # GNU base-256 for sizes past 8 GiB: positive only
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        raise BundleInvalid("bundle has a tar member of negative size")
    return _octal(field, "member size")


def _octal(field: bytes, what: str) -> int:
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if any(c not in b"01234567" for c in text):
        raise BundleInvalid(f"bundle is not a readable tar stream: the {what} is not octal")
    return int(text, 8)


def _decimal(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise BundleInvalid(f"bundle has a malformed {what}")
    return int(text)


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleInvalid(f"bundle has a {what} that is not UTF-8") from exc


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK
