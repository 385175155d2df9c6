"""STREAM payload encryption: 64 KiB ChaCha20-Poly1305 chunks, counter nonces, a final flag."""

from __future__ import annotations

from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.errors import PayloadError

__all__ = [
    "CHUNK_SIZE",
    "NONCE_SIZE",
    "SEALED_CHUNK_SIZE",
    "PayloadDecryptor",
    "PayloadEncryptor",
    "check_first_chunk",
    "payload_key",
]

CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
NONCE_SIZE = 16
SEALED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
_SEALED_SIZE = SEALED_CHUNK_SIZE
_FINAL = b"\x01"
_MORE = b"\x00"


def payload_key(file_key: bytes, nonce: bytes) -> bytes:
    """HKDF-SHA-256(file key, salt = payload nonce, info "payload")."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=nonce, info=b"payload").derive(file_key)


def check_first_chunk(key: bytes, sealed: bytes | memoryview, *, more: bool) -> None:
    """Raise PayloadError unless `sealed` is chunk 0 of a STREAM under `key`.

    With `more`, data follows it, so it must be a full non-final chunk; without, it is the
    final (and only) chunk. The plaintext is discarded.
    """
    prefix = (0).to_bytes(11, "big")
    if more:
        if len(sealed) != _SEALED_SIZE:
            raise PayloadError(
                f"payload chunk 0 is {len(sealed)} bytes, but a chunk followed by more data "
                f"must be {_SEALED_SIZE}"
            )
        flag = _MORE
    else:
        if not TAG_SIZE <= len(sealed) <= _SEALED_SIZE:
            raise PayloadError(
                f"payload chunk 0 is {len(sealed)} bytes; a final chunk is "
                f"{TAG_SIZE} to {_SEALED_SIZE}"
            )
        flag = _FINAL
    try:
        ChaCha20Poly1305(key).decrypt(prefix + flag, bytes(sealed), None)
    except InvalidTag:
        raise PayloadError("payload chunk 0 failed authentication") from None


class PayloadEncryptor:
    """Encrypts plaintext pushed through write() into sealed chunks passed to `sink`.

    A full chunk is held back until more data arrives, because only close() knows which chunk
    is the last one. Views of immutable `bytes` are held by reference; anything else is copied.
    """

    __slots__ = ("_aead", "_buf", "_counter", "_held", "_sink")

    def __init__(self, key: bytes, sink: Callable[[bytes], object]) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._sink = sink
        self._counter = 0
        self._held: memoryview | None = None  # pending chunk that is a view of caller bytes
        self._buf = bytearray()  # pending chunk copied from mutable input

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        size = len(view)
        if not size:
            return
        pos = 0
        if self._held is not None:
            held = self._held
            self._held = None
            if len(held) == CHUNK_SIZE:
                self._seal(held, _MORE)
            else:
                self._buf += held
        if self._buf:
            take = min(CHUNK_SIZE - len(self._buf), size)
            self._buf += view[:take]
            pos = take
            if pos == size:
                return
            self._seal(bytes(self._buf), _MORE)
            self._buf.clear()
        seal = self._seal
        while size - pos > CHUNK_SIZE:
            seal(view[pos : pos + CHUNK_SIZE], _MORE)
            pos += CHUNK_SIZE
        if isinstance(view.obj, bytes):  # immutable: safe to hold by reference
            self._held = view[pos:]
        else:
            self._buf += view[pos:]

    def close(self) -> None:
        """Seal the final chunk (empty only when the whole plaintext is empty)."""
        last: bytes | memoryview = self._held if self._held is not None else bytes(self._buf)
        self._held = None
        self._buf = bytearray()
        self._seal(last, _FINAL)

    def _seal(self, chunk: bytes | memoryview, flag: bytes) -> None:
        nonce = self._counter.to_bytes(11, "big") + flag
        self._counter += 1
        self._sink(self._aead.encrypt(nonce, chunk, None))


class PayloadDecryptor:
    """Decrypts sealed chunks read with `readinto`, passing each only once it authenticates."""

    __slots__ = ("_aead", "released")

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.released = 0

    def run(
        self,
        readinto: Callable[[memoryview], int | None],
        sink: Callable[[bytes], object],
    ) -> None:
        """Decrypt to EOF; raise PayloadError on a bad, missing or extra chunk."""
        view = memoryview(bytearray(_SEALED_SIZE))
        aead = self._aead
        counter = 0
        while True:
            size = _read_full(readinto, view)
            sealed = view[:size]
            prefix = counter.to_bytes(11, "big")
            if size == _SEALED_SIZE:
                # A full chunk is the last one only if it authenticates with the final flag.
                try:
                    plain, final = aead.decrypt(prefix + _MORE, sealed, None), False
                except InvalidTag:
                    plain, final = self._open_final(prefix, sealed, counter), True
            else:
                if size == 0 and counter:
                    raise PayloadError(
                        "payload is truncated: it ends without a final chunk; "
                        "only the preceding chunks were released"
                    )
                if size < TAG_SIZE:
                    raise PayloadError("payload is truncated: the last chunk is cut short")
                if size == TAG_SIZE and counter:
                    raise PayloadError("payload ends with an empty chunk, which STREAM forbids")
                plain, final = self._open_final(prefix, sealed, counter), True
            sink(plain)
            self.released += len(plain)
            if final:
                if _read_full(readinto, view[:1]):
                    raise PayloadError(
                        "payload has data after its final chunk; the plaintext before it was "
                        "released but the file has been tampered with"
                    )
                return
            counter += 1

    def _open_final(self, prefix: bytes, sealed: memoryview, counter: int) -> bytes:
        try:
            return self._aead.decrypt(prefix + _FINAL, sealed, None)
        except InvalidTag:
            raise PayloadError(
                f"payload chunk {counter} failed authentication: the file is corrupt or "
                "truncated; only the preceding chunks were released"
            ) from None


def _read_full(readinto: Callable[[memoryview], int | None], view: memoryview) -> int:
    got = 0
    want = len(view)
    while got < want:
        n = readinto(view[got:])
        if not n:
            break
        got += n
    return got
