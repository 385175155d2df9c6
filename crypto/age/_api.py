"""Encrypting, decrypting and re-heading whole age files."""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import BinaryIO, cast

from crypto.age._armor import ArmorError, ArmorWriter, dearmor
from crypto.age._format import MAX_LINE_BYTES, Header, Stanza, header_mac, read_header_lines
from crypto.age._keys import Recipient, Unwrapper
from crypto.age._stream import (
    CHUNK_SIZE,
    NONCE_SIZE,
    SEALED_CHUNK_SIZE,
    PayloadDecryptor,
    PayloadEncryptor,
    check_first_chunk,
)
from crypto.age._stream import payload_key as _payload_key
from crypto.errors import AgeError, HeaderError, HeaderMacError, NoIdentityMatched, PayloadError

__all__ = [
    "PAYLOAD_HEAD_SIZE",
    "Encryptor",
    "decrypt",
    "decrypt_bytes",
    "encrypt",
    "encrypt_bytes",
    "payload_sha256",
    "read_header",
    "reheader",
    "reheader_for_payload",
    "split_header",
    "stanza_types",
]

logger = logging.getLogger(__name__)

_FILE_KEY_SIZE = 16
# The payload's nonce and its first sealed STREAM chunk: what proves a file key opens a payload.
PAYLOAD_HEAD_SIZE = NONCE_SIZE + SEALED_CHUNK_SIZE
_POST_QUANTUM_TYPES = frozenset({"mlkem768x25519"})
# Armored input is decoded in memory; past this size it is refused rather than buffered.
MAX_ARMORED_BYTES = 256 * 1024 * 1024
_READ_SIZE = 16 * CHUNK_SIZE

Source = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]


def _check_recipients(recipients: Sequence[Recipient]) -> None:
    if not recipients:
        raise AgeError("no recipients given: pass at least one age1… or age1pq1… recipient")
    types = {r.stanza_type for r in recipients}
    if "scrypt" in types and len(recipients) > 1:
        raise AgeError("a passphrase (scrypt) recipient must be the file's only recipient")
    if types & _POST_QUANTUM_TYPES and types - _POST_QUANTUM_TYPES:
        raise AgeError(
            "refusing to mix post-quantum (mlkem768x25519) and classic recipients: the file "
            "would be only as strong as the classic one; use hybrid recipients for everyone"
        )


def _build_header(file_key: bytes, recipients: Sequence[Recipient]) -> bytes:
    _check_recipients(recipients)
    stanzas: list[Stanza] = []
    for number, recipient in enumerate(recipients, start=1):
        try:
            stanzas.extend(recipient.wrap(file_key))
        except ValueError as exc:
            raise AgeError(f"failed to wrap the file key for recipient #{number}: {exc}") from exc
    unsigned = Header(tuple(stanzas), bytes(32))
    return bytes(Header(unsigned.stanzas, header_mac(file_key, unsigned.mac_input())))


def _open_header(header: Header, identities: Sequence[Unwrapper]) -> bytes:
    """The file key, after checking the header MAC."""
    if "scrypt" in header.stanza_types and len(header.stanzas) != 1:
        raise HeaderError("an scrypt stanza must be the only stanza in the header")
    if not identities:
        raise NoIdentityMatched("no identities given to decrypt with")
    for identity in identities:
        file_key = identity.unwrap(header.stanzas)
        if file_key is not None:
            break
    else:
        raise NoIdentityMatched(
            f"none of the {len(identities)} identities opens this file (stanza types: "
            f"{', '.join(header.stanza_types)}); is it encrypted to a different key?"
        )
    if len(file_key) != _FILE_KEY_SIZE:
        raise HeaderError(f"the wrapped file key is {len(file_key)} bytes, not 16")
    if not hmac.compare_digest(header_mac(file_key, header.mac_input()), header.mac):
        raise HeaderMacError("the header MAC is wrong: the header was altered or corrupted")
    return file_key


class Encryptor:
    """Streams an age file to `dst`: write() plaintext, then close() (or use `with`).

    After close(), `header` holds the header bytes and `payload_sha256`/`payload_size`
    describe the binary payload (nonce and sealed chunks) that followed it.
    """

    def __init__(
        self,
        dst: BinaryIO,
        recipients: Sequence[Recipient],
        *,
        armor: bool = False,
        hash_payload: bool = True,
    ) -> None:
        file_key = os.urandom(_FILE_KEY_SIZE)
        self.header = _build_header(file_key, recipients)
        self._armor = ArmorWriter(dst) if armor else None
        out = self._armor if self._armor is not None else dst
        self._hash = hashlib.sha256() if hash_payload else None
        self._payload_size = 0
        self._plaintext_size = 0
        self._closed = False
        nonce = os.urandom(NONCE_SIZE)
        out.write(self.header)
        write: Callable[[bytes], object] = out.write
        self._sink = self._hashing_sink(write) if self._hash is not None else write
        self._sink(nonce)
        self._payload_size = NONCE_SIZE
        self._stream = PayloadEncryptor(_payload_key(file_key, nonce), self._counting_sink)
        logger.debug(
            "age.encrypt.start stanzas=%s armor=%s",
            ",".join(r.stanza_type for r in recipients),
            armor,
        )

    def _hashing_sink(self, write: Callable[[bytes], object]) -> Callable[[bytes], object]:
        update = self._hash.update if self._hash is not None else None
        assert update is not None

        def sink(data: bytes) -> None:
            update(data)
            write(data)

        return sink

    def _counting_sink(self, sealed: bytes) -> None:
        self._payload_size += len(sealed)
        self._sink(sealed)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Encrypt more plaintext; full chunks are written out as soon as more data follows."""
        if self._closed:
            raise ValueError("write to a closed Encryptor")
        size = memoryview(data).nbytes
        self._plaintext_size += size
        self._stream.write(data)
        return size

    def close(self) -> None:
        """Seal the final chunk (and the armor's END line); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stream.close()
        if self._armor is not None:
            self._armor.close()
        logger.debug(
            "age.encrypt.done plaintext_bytes=%d payload_bytes=%d",
            self._plaintext_size,
            self._payload_size,
        )

    @property
    def payload_sha256(self) -> bytes:
        """SHA-256 of the binary payload (the bytes after the header); after close()."""
        if not self._closed or self._hash is None:
            raise ValueError("payload_sha256 is known only after close() with hash_payload=True")
        return self._hash.digest()

    @property
    def payload_size(self) -> int:
        """Bytes of binary payload written so far (nonce and sealed chunks)."""
        return self._payload_size

    @property
    def plaintext_size(self) -> int:
        return self._plaintext_size

    def __enter__(self) -> Encryptor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # On an error the final chunk is never written, so the file cannot pass as complete.
        if exc_type is None:
            self.close()


def encrypt(
    recipients: Sequence[Recipient], data: Source, dst: BinaryIO, *, armor: bool = False
) -> Encryptor:
    """Encrypt bytes, a binary file or an iterable of byte chunks to `dst`; returns the
    closed Encryptor (for `header`, `payload_sha256`, `payload_size`)."""
    enc = Encryptor(dst, recipients, armor=armor)
    if isinstance(data, bytes | bytearray | memoryview):
        enc.write(data)
    elif hasattr(data, "read"):
        read = data.read
        while chunk := read(_READ_SIZE):
            enc.write(chunk)
    else:
        for chunk in data:
            enc.write(chunk)
    enc.close()
    return enc


def encrypt_bytes(recipients: Sequence[Recipient], data: bytes, *, armor: bool = False) -> bytes:
    """A whole age file for `data`, in memory."""
    out = io.BytesIO()
    encrypt(recipients, data, out, armor=armor)
    return out.getvalue()


def read_header(src: BinaryIO) -> bytes:
    """Read a binary age header from `src`, leaving it positioned at the payload."""
    return bytes(read_header_lines(src.readline))


def split_header(data: bytes) -> tuple[bytes, bytes]:
    """(header including its MAC line, payload) of a binary age file."""
    src = io.BytesIO(data)
    header = read_header(src)
    return header, data[len(header) :]


def stanza_types(header: bytes) -> tuple[str, ...]:
    """The stanza types in a header, without opening it (e.g. to check a re-headered file)."""
    return Header.parse(header).stanza_types


def payload_sha256(data: bytes | BinaryIO) -> bytes:
    """SHA-256 of the payload (bytes after the header) of a complete binary age file."""
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    read_header(src)
    digest = hashlib.sha256()
    while chunk := src.read(_READ_SIZE):
        digest.update(chunk)
    return digest.digest()


def reheader(
    header: bytes, identities: Sequence[Unwrapper], recipients: Sequence[Recipient]
) -> bytes:
    """A new header, for `recipients`, that is valid in front of the unchanged payload.

    Raises NoIdentityMatched if no identity opens `header` and HeaderMacError if its MAC is
    wrong; the file key never leaves this function.
    """
    parsed = Header.parse(header)
    file_key = _open_header(parsed, identities)
    new = _build_header(file_key, recipients)
    logger.debug(
        "age.reheader from=%s to=%s",
        ",".join(parsed.stanza_types),
        ",".join(r.stanza_type for r in recipients),
    )
    return new


def reheader_for_payload(
    header: bytes,
    identities: Sequence[Unwrapper],
    recipients: Sequence[Recipient],
    *,
    payload_head: bytes | memoryview,
    payload_size: int,
) -> bytes:
    """Like `reheader`, but only for the payload that the header's file key opens.

    `payload_head` is the first ``min(payload_size, PAYLOAD_HEAD_SIZE)`` bytes of the payload
    that will follow the new header (its 16-byte nonce and first STREAM chunk); that chunk must
    authenticate under the file key, so a header cannot be re-wrapped in front of another file's
    payload. Raises PayloadError if it does not, besides what `reheader` raises.
    """
    if payload_size < 0 or len(payload_head) != min(payload_size, PAYLOAD_HEAD_SIZE):
        raise ValueError(
            f"payload_head must be the first min(payload_size, {PAYLOAD_HEAD_SIZE}) bytes of the "
            f"payload, got {len(payload_head)} of {payload_size}"
        )
    if payload_size < NONCE_SIZE:
        raise PayloadError(f"payload is {payload_size} bytes: it ends before its 16-byte nonce")
    parsed = Header.parse(header)
    file_key = _open_header(parsed, identities)
    nonce = bytes(payload_head[:NONCE_SIZE])
    check_first_chunk(
        _payload_key(file_key, nonce),
        payload_head[NONCE_SIZE:],
        more=payload_size > PAYLOAD_HEAD_SIZE,
    )
    return _build_header(file_key, recipients)


def decrypt(identities: Sequence[Unwrapper], src: bytes | BinaryIO, dst: BinaryIO) -> int:
    """Decrypt a binary or armored age file to `dst`; returns the plaintext size.

    Plaintext is written one authenticated 64 KiB chunk at a time: after a PayloadError, `dst`
    holds exactly the chunks that authenticated.
    """
    stream: BinaryIO = io.BytesIO(src) if isinstance(src, bytes) else src
    first = stream.readline(MAX_LINE_BYTES + 1)
    if first.lstrip(b" \t\r\n").startswith(b"-----BEGIN") or (first and not first.strip()):
        rest = stream.read(MAX_ARMORED_BYTES + 1 - len(first))
        if len(first) + len(rest) > MAX_ARMORED_BYTES:
            raise ArmorError(f"armored file is larger than {MAX_ARMORED_BYTES} bytes")
        stream = io.BytesIO(dearmor(first + rest))
        first = stream.readline(MAX_LINE_BYTES + 1)
    pending = [first]

    def readline(limit: int) -> bytes:
        return pending.pop() if pending else stream.readline(limit)

    header = read_header_lines(readline)
    file_key = _open_header(header, identities)
    nonce = stream.read(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise HeaderError("file ends before the 16-byte payload nonce: it is truncated")
    decryptor = PayloadDecryptor(_payload_key(file_key, nonce))
    decryptor.run(_readinto_of(stream), dst.write)
    return decryptor.released


def decrypt_bytes(identities: Sequence[Unwrapper], data: bytes) -> bytes:
    """The plaintext of a whole age file held in memory."""
    out = io.BytesIO()
    decrypt(identities, data, out)
    return out.getvalue()


def _readinto_of(stream: BinaryIO) -> Callable[[memoryview], int | None]:
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        return cast(Callable[[memoryview], "int | None"], readinto)

    def fallback(view: memoryview) -> int:
        data = stream.read(len(view))
        view[: len(data)] = data
        return len(data)

    return fallback
