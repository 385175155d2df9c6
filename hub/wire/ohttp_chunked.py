"""Chunked Oblivious HTTP messages (draft-ietf-ohai-chunked-ohttp-08), for large relayed answers.

RFC 9458 seals a response in one piece: the whole body must be in memory, and in one broker
message. The chunked variant seals it as a run of chunks that can be opened one at a time:

- the request is ``hdr || enc`` followed by HPKE-sealed chunks, each behind a QUIC
  variable-length integer giving its length; the last is behind a zero length and sealed with
  the AAD ``"final"``. HPKE info is ``"message/bhttp chunked request" || 0x00 || hdr``;
- the response is a ``max(Nn, Nk)``-byte nonce, then AEAD-sealed chunks framed the same way.
  The key and base nonce are expanded, as in RFC 9458 §4.4, from the request's exporter secret
  under the label ``"message/bhttp chunked response"``; chunk ``i`` is sealed with the base
  nonce XOR ``i`` (big-endian, ``Nn`` bytes), the final chunk with the AAD ``"final"``.

So a chunk cannot be altered, moved to another place in the stream, taken from another answer
or passed off as the last one; and a stream that stops before its final chunk is known to be
cut short. A non-final chunk is never empty (the draft's rule; an empty one is refused).

:class:`ResponseSealer` and :class:`ResponseOpener` work one chunk at a time (the relay carries
one chunk per broker message); :meth:`ResponseOpener.open_stream` reads a whole
``message/ohttp-chunked-res`` as the draft frames it. Nothing here implements a primitive: HPKE
is ``pyhpke``'s, HKDF and the AEADs are ``cryptography``'s, as in :mod:`hub.wire.ohttp`.

Pure apart from randomness (ephemeral keys and response nonces; tests may pass them in).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from pyhpke import KEMKey, KEMKeyPair, PyHPKEError

from hub.wire import ohttp
from hub.wire.bhttp import BhttpError, decode_varint, encode_varint
from hub.wire.ohttp import (
    _AEAD_NONCE_BYTES,
    _HEADER_BYTES,
    _NPK,
    _TAG_BYTES,
    _header,
    _response_aead,
    _response_nonce_bytes,
    _suite,
)

__all__ = [
    "FINAL_AAD",
    "MAX_CHUNKS",
    "REQUEST_LABEL",
    "REQUEST_MEDIA_TYPE",
    "RESPONSE_LABEL",
    "RESPONSE_MEDIA_TYPE",
    "ChunkedClientExchange",
    "ChunkedGatewayExchange",
    "ResponseOpener",
    "ResponseSealer",
    "StreamBroken",
    "decapsulate_request",
    "encapsulate_request",
]

REQUEST_MEDIA_TYPE: Final = "message/ohttp-chunked-req"
RESPONSE_MEDIA_TYPE: Final = "message/ohttp-chunked-res"
REQUEST_LABEL: Final = b"message/bhttp chunked request"
RESPONSE_LABEL: Final = b"message/bhttp chunked response"
FINAL_AAD: Final = b"final"
# The draft's hard limit is 256^Nn chunks (the nonce would repeat). We stop far below it:
# 2^32 chunks of 64 KiB is 256 TiB, and AES-GCM's safety margin shrinks with every chunk.
MAX_CHUNKS: Final = 1 << 32


class StreamBroken(ohttp.DecapsulationFailed):
    """A chunked response does not open as one whole stream: a chunk was altered, dropped,
    reordered or taken from another answer, or the stream stopped before its final chunk."""


@dataclass(frozen=True, slots=True)
class ChunkedClientExchange:
    """What a client keeps after sealing a chunked request, to open the chunked response."""

    algorithm: ohttp.SymmetricAlgorithm
    enc: bytes
    secret: bytes = field(repr=False)

    def opener(self, *, max_chunks: int = MAX_CHUNKS) -> ResponseOpener:
        """A reader of this request's chunked response, chunk by chunk."""
        return ResponseOpener(self.algorithm, self.enc, self.secret, max_chunks=max_chunks)


@dataclass(frozen=True, slots=True)
class ChunkedGatewayExchange:
    """What the gateway keeps after opening a chunked request, to seal the chunked response."""

    key_id: int
    algorithm: ohttp.SymmetricAlgorithm
    enc: bytes
    secret: bytes = field(repr=False)

    def sealer(self, *, nonce: bytes | None = None, max_chunks: int = MAX_CHUNKS) -> ResponseSealer:
        """A sealer of this request's response; ``nonce`` is for vector tests only."""
        return ResponseSealer(self.algorithm, self.enc, self.secret, nonce, max_chunks)


class ResponseSealer:
    """Seals a response chunk by chunk: :attr:`nonce` first, then each :meth:`seal` in order."""

    def __init__(
        self,
        algorithm: ohttp.SymmetricAlgorithm,
        enc: bytes,
        secret: bytes,
        nonce: bytes | None,
        max_chunks: int,
    ) -> None:
        size = _response_nonce_bytes(algorithm)
        if nonce is None:
            nonce = secrets.token_bytes(size)
        elif len(nonce) != size:
            raise ohttp.OhttpError(f"response nonce must be {size} bytes, got {len(nonce)}")
        self.nonce = nonce
        self._aead, self._base = _response_aead(algorithm, secret, enc, nonce)
        self._max_chunks = _check_max_chunks(max_chunks)
        self.counter = 0
        self.finished = False

    def seal(self, chunk: bytes, *, final: bool = False) -> bytes:
        """The next chunk, framed: its sealed length then the sealed bytes, or a zero length
        then the sealed bytes for the final chunk (which may be empty; no other may be)."""
        if self.finished:
            raise ohttp.OhttpError(
                "the response is already finished: nothing follows the final chunk"
            )
        if not chunk and not final:
            raise ohttp.OhttpError("a non-final chunk must not be empty")
        if self.counter >= self._max_chunks:
            raise ohttp.OhttpError(
                f"a response has at most {self._max_chunks} chunks: send larger chunks"
            )
        sealed = self._aead.encrypt(
            _chunk_nonce(self._base, self.counter), chunk, FINAL_AAD if final else b""
        )
        self.counter += 1
        if final:
            self.finished = True
            return b"\x00" + sealed
        return encode_varint(len(sealed)) + sealed


class ResponseOpener:
    """Opens a chunked response in order; :meth:`finish` refuses a stream without its final chunk."""

    def __init__(
        self,
        algorithm: ohttp.SymmetricAlgorithm,
        enc: bytes,
        secret: bytes,
        *,
        max_chunks: int = MAX_CHUNKS,
    ) -> None:
        self._algorithm, self._enc, self._secret = algorithm, enc, secret
        self._nonce_bytes = _response_nonce_bytes(algorithm)
        self._aead: AESGCM | ChaCha20Poly1305 | None = None
        self._base = b""
        self._max_chunks = _check_max_chunks(max_chunks)
        self.counter = 0
        self.finished = False

    def open_first(self, data: bytes) -> tuple[bytes, bool]:
        """Read the response nonce at the start of ``data``, then its one chunk (see :meth:`open_chunk`)."""
        if self._aead is not None:
            raise StreamBroken("the response nonce came twice")
        if len(data) < self._nonce_bytes:
            raise StreamBroken(
                f"the first part of the response is {len(data)} bytes, shorter than its nonce"
            )
        nonce = bytes(data[: self._nonce_bytes])
        self._aead, self._base = _response_aead(self._algorithm, self._secret, self._enc, nonce)
        return self.open_chunk(data[self._nonce_bytes :])

    def open_chunk(self, data: bytes) -> tuple[bytes, bool]:
        """Open exactly one framed chunk (the whole of ``data``); returns (plaintext, is_final)."""
        try:
            length, start = decode_varint(bytes(data))
        except BhttpError:
            raise StreamBroken(f"chunk {self.counter} has no length") from None
        if length == 0:
            return self._open(bytes(data[start:]), final=True), True
        if length != len(data) - start:
            raise StreamBroken(
                f"chunk {self.counter} says {length} bytes but {len(data) - start} follow"
            )
        return self._open(bytes(data[start:]), final=False), False

    def open_stream(self, data: bytes) -> bytes:
        """Open a whole ``message/ohttp-chunked-res`` (nonce, chunks, final chunk to the end)."""
        if len(data) < self._nonce_bytes:
            raise StreamBroken(f"response is {len(data)} bytes, shorter than its nonce")
        nonce = bytes(data[: self._nonce_bytes])
        self._aead, self._base = _response_aead(self._algorithm, self._secret, self._enc, nonce)
        out = bytearray()
        pos = self._nonce_bytes
        while not self.finished:
            try:
                length, pos = decode_varint(data, pos)
            except BhttpError:
                raise StreamBroken(
                    f"response ends after chunk {self.counter - 1}, before its final chunk"
                ) from None
            if length == 0:
                out += self._open(bytes(data[pos:]), final=True)
                break
            if length > len(data) - pos:
                raise StreamBroken(f"chunk {self.counter} is cut short")
            out += self._open(bytes(data[pos : pos + length]), final=False)
            pos += length
        return bytes(out)

    def finish(self) -> None:
        """Raise :class:`StreamBroken` unless the final chunk was opened."""
        if not self.finished:
            raise StreamBroken(
                f"the response stopped after {self.counter} chunks, before its final chunk: "
                "it was cut short on the way"
            )

    def _open(self, sealed: bytes, *, final: bool) -> bytes:
        if self._aead is None:
            raise StreamBroken("a chunk came before the response nonce")
        if self.finished:
            raise StreamBroken("a chunk came after the final chunk")
        if self.counter >= self._max_chunks:
            raise StreamBroken(f"the response has more than {self._max_chunks} chunks")
        if len(sealed) < _TAG_BYTES:
            raise StreamBroken(f"chunk {self.counter} is shorter than its tag")
        try:
            plain = self._aead.decrypt(
                _chunk_nonce(self._base, self.counter), sealed, FINAL_AAD if final else b""
            )
        except InvalidTag:
            raise StreamBroken(
                f"chunk {self.counter} does not open"
                + (" as the final chunk" if final else "")
                + ": it was altered, reordered, cut or belongs to another answer"
            ) from None
        if not plain and not final:
            raise StreamBroken(f"chunk {self.counter} is empty and not the final chunk")
        self.counter += 1
        self.finished = final
        return plain


def encapsulate_request(
    config: ohttp.KeyConfig,
    parts: Sequence[bytes],
    *,
    algorithm: ohttp.SymmetricAlgorithm | None = None,
    ephemeral_key: X25519PrivateKey | None = None,
) -> tuple[bytes, ChunkedClientExchange]:
    """Seal ``parts`` (the last becomes the final chunk; the others must not be empty) as
    ``message/ohttp-chunked-req``; ``ephemeral_key`` is for vector tests only."""
    if not parts:
        raise ohttp.OhttpError("a chunked request needs at least its final chunk")
    if any(not part for part in parts[:-1]):
        raise ohttp.OhttpError("a non-final chunk must not be empty")
    if algorithm is None:
        usable = [a for a in config.algorithms if a.supported]
        if not usable:
            raise ohttp.UnknownKey(
                f"key configuration {config.key_id} lists no KDF/AEAD pair this client supports"
            )
        algorithm = usable[0]
    elif algorithm not in config.algorithms or not algorithm.supported:
        raise ohttp.UnknownKey(
            f"KDF {algorithm.kdf_id} / AEAD {algorithm.aead_id} is not offered by key "
            f"configuration {config.key_id} or not supported here"
        )
    header = _header(config.key_id, config.kem_id, algorithm)
    suite = _suite(algorithm)
    recipient = suite.kem.deserialize_public_key(config.public_key)
    eks = None
    if ephemeral_key is not None:
        eks = KEMKeyPair(
            KEMKey.from_pyca_cryptography_key(ephemeral_key),
            KEMKey.from_pyca_cryptography_key(ephemeral_key.public_key()),
        )
    enc, context = suite.create_sender_context(recipient, _info(header), eks=eks)
    out = bytearray(header + enc)
    for part in parts[:-1]:
        sealed = context.seal(part)
        out += encode_varint(len(sealed)) + sealed
    out += b"\x00" + context.seal(parts[-1], FINAL_AAD)
    secret = context.export(RESPONSE_LABEL, _response_nonce_bytes(algorithm))
    return bytes(out), ChunkedClientExchange(algorithm, enc, secret)


def decapsulate_request(
    keys: ohttp.GatewayKey | Iterable[ohttp.GatewayKey],
    data: bytes,
    *,
    max_bytes: int = ohttp.DEFAULT_MAX_ENCAPSULATED_BYTES,
) -> tuple[bytes, ChunkedGatewayExchange]:
    """Open a whole ``message/ohttp-chunked-req``; return the request bytes and the exchange."""
    by_id = {key.key_id: key for key in ([keys] if isinstance(keys, ohttp.GatewayKey) else keys)}
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ohttp.OhttpError(f"encapsulated request must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise ohttp.OhttpError(
            f"encapsulated request is {len(data)} bytes, over the limit of {max_bytes} bytes"
        )
    if len(data) < _HEADER_BYTES:
        raise ohttp.OhttpError(
            f"encapsulated request is {len(data)} bytes, shorter than its header"
        )
    key_id = data[0]
    kem_id = int.from_bytes(data[1:3], "big")
    algorithm = ohttp.SymmetricAlgorithm(
        int.from_bytes(data[3:5], "big"), int.from_bytes(data[5:7], "big")
    )
    key = by_id.get(key_id)
    if key is None:
        served = ", ".join(str(k) for k in sorted(by_id)) or "none"
        raise ohttp.UnknownKey(
            f"encapsulated request names key id {key_id}, this gateway serves {served}: "
            "fetch the current key configuration"
        )
    if kem_id not in _NPK or algorithm not in key.algorithms:
        raise ohttp.UnknownKey(
            f"encapsulated request uses KEM 0x{kem_id:04x}, KDF 0x{algorithm.kdf_id:04x}, "
            f"AEAD 0x{algorithm.aead_id:04x}, which key {key_id} does not accept"
        )
    npk = _NPK[kem_id]
    if len(data) < _HEADER_BYTES + npk + 1 + _TAG_BYTES:
        raise ohttp.OhttpError("encapsulated request is too short for its key share and a chunk")
    header = data[:_HEADER_BYTES]
    enc = data[_HEADER_BYTES : _HEADER_BYTES + npk]
    suite = _suite(algorithm)
    failed = ohttp.DecapsulationFailed(
        f"encapsulated request does not open with relay key {key_id}: it was sealed to "
        "another key, altered on the way, or cut short"
    )
    try:
        private = KEMKey.from_pyca_cryptography_key(key.private_key)
        context = suite.create_recipient_context(enc, private, _info(header))
    except (ValueError, PyHPKEError):
        raise failed from None
    request = bytearray()
    pos = _HEADER_BYTES + npk
    while True:
        try:
            length, pos = decode_varint(data, pos)
        except BhttpError:
            raise failed from None
        final = length == 0
        end = len(data) if final else pos + length
        if end > len(data):
            raise failed
        try:
            plain = context.open(data[pos:end], FINAL_AAD if final else b"")
        except (ValueError, PyHPKEError):
            raise failed from None
        if not plain and not final:
            raise failed
        request += plain
        if final:
            break
        pos = end
    secret = context.export(RESPONSE_LABEL, _response_nonce_bytes(algorithm))
    return bytes(request), ChunkedGatewayExchange(key_id, algorithm, enc, secret)


def _info(header: bytes) -> bytes:
    return REQUEST_LABEL + b"\x00" + header


def _chunk_nonce(base: bytes, counter: int) -> bytes:
    # draft-ietf-ohai-chunked-ohttp §6.2: chunk_nonce = aead_nonce XOR encode(Nn, counter).
    mixed = int.from_bytes(base, "big") ^ counter
    return mixed.to_bytes(_AEAD_NONCE_BYTES, "big")


def _check_max_chunks(max_chunks: int) -> int:
    if not 1 <= max_chunks <= 256**_AEAD_NONCE_BYTES:
        raise ohttp.OhttpError(f"max_chunks must be 1 to 256^{_AEAD_NONCE_BYTES}, got {max_chunks}")
    return max_chunks
