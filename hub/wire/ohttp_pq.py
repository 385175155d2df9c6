"""A post-quantum variant of the relay encapsulation: ML-KEM-768+X25519 both ways.

RFC 9458 (:mod:`hub.wire.ohttp`) derives the response keys from the request's HPKE exporter
secret; ``cryptography``'s HPKE, the only maintained one with the ML-KEM-768+X25519 hybrid KEM,
is single-shot and has no exporter. So this variant seals both directions single-shot:

- request: ``hdr || Seal(device hybrid key, info_req, response_public || bhttp request)`` where
  ``hdr = key_id (1) || 0x647a (2) || 0x0001 (2) || 0x0001 (2)`` and ``info_req =
  "doorward relay pq request" || 0x00 || hdr``; ``response_public`` is a fresh ML-KEM-768+X25519
  public key (1,216 bytes) the client draws for this one call;
- response: ``Seal(response_public, info_res, bhttp response)`` with ``info_res = "doorward relay
  pq response" || 0x00 || hdr || enc`` (``enc``: the request's 1,120-byte encapsulation), so a
  response opens only for the call it answers, and only with a key the client then forgets.

``Seal`` is HPKE base mode with KEM ML-KEM-768+X25519, HKDF-SHA256 and AES-128-GCM, single-shot
(``enc || ct``). This is Doorward's own framing of standard HPKE, not an RFC format, and has no
published vectors: its tests are round trips and refusals.

Pure apart from the key generation that ``cryptography`` does.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from hub.wire import ohttp_chunked
from hub.wire.ohttp import (
    DEFAULT_MAX_ENCAPSULATED_BYTES,
    DecapsulationFailed,
    OhttpError,
    SymmetricAlgorithm,
    UnknownKey,
)

__all__ = [
    "PQ_CHUNKED_REQUEST_MEDIA_TYPE",
    "PQ_KEM_ID",
    "PqClientExchange",
    "PqGatewayExchange",
    "PqGatewayKey",
    "PqKeyConfig",
    "pq_decapsulate_chunked",
    "pq_decapsulate_request",
    "pq_encapsulate_chunked",
    "pq_encapsulate_request",
]

PQ_KEM_ID: Final = 0x647A  # ML-KEM-768+X25519 in the HPKE KEM registry drafts
_KDF_ID, _AEAD_ID = 0x0001, 0x0001  # HKDF-SHA256, AES-128-GCM
_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
_REQUEST_INFO = b"doorward relay pq request"
_CHUNKED_REQUEST_INFO = b"doorward relay pq chunked request"
_SECRET_BYTES = 32
# The MQTT 5 content type of a request sealed with :func:`pq_encapsulate_chunked`.
PQ_CHUNKED_REQUEST_MEDIA_TYPE: Final = "application/x-doorward-ohttp-pq-chunked-req"
_RESPONSE_INFO = b"doorward relay pq response"
_MLKEM_PUBLIC_BYTES = 1184
_PUBLIC_BYTES = _MLKEM_PUBLIC_BYTES + 32
_SEED_BYTES = 64 + 32  # ML-KEM seed (d || z) and X25519 private key
_ENC_BYTES = 1120
_TAG_BYTES = 16
_HEADER_BYTES = 7
_ALGORITHM = SymmetricAlgorithm(_KDF_ID, _AEAD_ID)


@dataclass(frozen=True, slots=True)
class PqKeyConfig:
    """The device's hybrid relay public key and its id (what phones pin and addresses carry)."""

    key_id: int
    public_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 0xFF:
            raise OhttpError(f"key id must be 0-255, got {self.key_id}")
        if len(self.public_key) != _PUBLIC_BYTES:
            raise OhttpError(
                f"hybrid relay public key must be {_PUBLIC_BYTES} bytes, got {len(self.public_key)}"
            )
        _public(self.public_key)  # refuses a malformed ML-KEM or X25519 half

    @classmethod
    def parse(cls, data: bytes) -> PqKeyConfig:
        """Read ``key_id (1) || 0x647a (2) || public key (1,216)``."""
        if len(data) != 3 + _PUBLIC_BYTES:
            raise OhttpError(
                f"hybrid key configuration must be {3 + _PUBLIC_BYTES} bytes, got {len(data)}"
            )
        kem_id = int.from_bytes(data[1:3], "big")
        if kem_id != PQ_KEM_ID:
            raise UnknownKey(f"hybrid key configuration has KEM 0x{kem_id:04x}, not 0x647a")
        try:
            return cls(data[0], bytes(data[3:]))
        except ValueError:
            raise OhttpError("hybrid key configuration holds a malformed public key") from None

    def __bytes__(self) -> bytes:
        return bytes([self.key_id]) + PQ_KEM_ID.to_bytes(2, "big") + self.public_key


@dataclass(frozen=True, slots=True)
class PqGatewayKey:
    """The device's hybrid relay private key (a 96-byte seed) and its id."""

    key_id: int
    seed: bytes = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 0xFF:
            raise OhttpError(f"key id must be 0-255, got {self.key_id}")
        if len(self.seed) != _SEED_BYTES:
            raise OhttpError(
                f"hybrid relay key seed must be {_SEED_BYTES} bytes, got {len(self.seed)}"
            )

    @classmethod
    def generate(cls, key_id: int) -> PqGatewayKey:
        """A fresh hybrid key."""
        return cls(key_id, _fresh_seed())

    def config(self) -> PqKeyConfig:
        """The public half, for phones and request addresses."""
        return PqKeyConfig(self.key_id, _public_bytes(self.seed))


@dataclass(frozen=True, slots=True)
class PqClientExchange:
    """What a client keeps after sealing a request: the one-call response key."""

    header: bytes
    enc: bytes
    response_seed: bytes = field(repr=False)

    def open_response(
        self, data: bytes, *, max_bytes: int = DEFAULT_MAX_ENCAPSULATED_BYTES
    ) -> bytes:
        """Open the device's answer to this call."""
        _check_size(data, _ENC_BYTES + _TAG_BYTES, max_bytes, "encapsulated response")
        info = _RESPONSE_INFO + b"\x00" + self.header + self.enc
        try:
            return _SUITE.decrypt(bytes(data), _private(self.response_seed), info=info)
        except (InvalidTag, ValueError):
            raise DecapsulationFailed(
                "encapsulated response does not open: it answers another request or was "
                "altered on the way"
            ) from None


@dataclass(frozen=True, slots=True)
class PqGatewayExchange:
    """What the device keeps after opening a request: where the answer goes."""

    key_id: int
    header: bytes
    enc: bytes
    response_public: bytes = field(repr=False)

    def seal_response(self, response: bytes) -> bytes:
        """Seal the answer to the client's one-call key."""
        info = _RESPONSE_INFO + b"\x00" + self.header + self.enc
        return _SUITE.encrypt(response, _public(self.response_public), info=info)


def pq_encapsulate_request(config: PqKeyConfig, request: bytes) -> tuple[bytes, PqClientExchange]:
    """Seal a binary HTTP request to the device's hybrid key, with a fresh key for the answer."""
    header = _header(config.key_id)
    response_seed = _fresh_seed()
    plaintext = _public_bytes(response_seed) + request
    sealed = _SUITE.encrypt(
        plaintext, _public(config.public_key), info=_REQUEST_INFO + b"\x00" + header
    )
    return header + sealed, PqClientExchange(header, sealed[:_ENC_BYTES], response_seed)


def pq_decapsulate_request(
    key: PqGatewayKey, data: bytes, *, max_bytes: int = DEFAULT_MAX_ENCAPSULATED_BYTES
) -> tuple[bytes, PqGatewayExchange]:
    """Open a hybrid-sealed request; return the binary request and the exchange for the answer."""
    _check_size(data, _HEADER_BYTES, max_bytes, "encapsulated request")
    header = bytes(data[:_HEADER_BYTES])
    if data[0] != key.key_id:
        raise UnknownKey(
            f"encapsulated request names key id {data[0]}, this gateway serves {key.key_id}: "
            "fetch the current key configuration"
        )
    if header != _header(key.key_id):
        raise UnknownKey(
            f"encapsulated request header {header.hex()} is not the hybrid suite "
            f"{_header(key.key_id).hex()}"
        )
    minimum = _HEADER_BYTES + _ENC_BYTES + _PUBLIC_BYTES + _TAG_BYTES
    _check_size(data, minimum, max_bytes, "encapsulated request")
    sealed = bytes(data[_HEADER_BYTES:])
    try:
        plaintext = _SUITE.decrypt(
            sealed, _private(key.seed), info=_REQUEST_INFO + b"\x00" + header
        )
        response_public = plaintext[:_PUBLIC_BYTES]
        _public(response_public)
    except (InvalidTag, ValueError):
        # A failed tag and a malformed encapsulation or key look the same to the sender.
        raise DecapsulationFailed(
            f"encapsulated request does not open with relay key {key.key_id}: it was sealed to "
            "another key or altered on the way"
        ) from None
    exchange = PqGatewayExchange(key.key_id, header, sealed[:_ENC_BYTES], response_public)
    return plaintext[_PUBLIC_BYTES:], exchange


def pq_encapsulate_chunked(
    config: PqKeyConfig, request: bytes
) -> tuple[bytes, ohttp_chunked.ChunkedClientExchange]:
    """Seal a binary HTTP request to the device's hybrid key, answered as a chunked response.

    The request is ``hdr || Seal(device hybrid key, info, secret || request)`` with a fresh
    32-byte ``secret``; the answer is exactly a chunked Oblivious HTTP response
    (:mod:`hub.wire.ohttp_chunked`) whose keys are expanded from that secret where the draft
    expands them from the HPKE exporter secret (``cryptography``'s single-shot HPKE has no
    exporter), with the request's 1,120-byte ``enc`` in the salt. Whoever records the traffic
    needs the device's hybrid key, ML-KEM-768 and X25519 both, to read either direction."""
    header = _header(config.key_id)
    secret = secrets.token_bytes(_SECRET_BYTES)
    sealed = _SUITE.encrypt(
        secret + request,
        _public(config.public_key),
        info=_CHUNKED_REQUEST_INFO + b"\x00" + header,
    )
    exchange = ohttp_chunked.ChunkedClientExchange(_ALGORITHM, sealed[:_ENC_BYTES], secret)
    return header + sealed, exchange


def pq_decapsulate_chunked(
    key: PqGatewayKey, data: bytes, *, max_bytes: int = DEFAULT_MAX_ENCAPSULATED_BYTES
) -> tuple[bytes, ohttp_chunked.ChunkedGatewayExchange]:
    """Open a request of :func:`pq_encapsulate_chunked`; return it and the exchange whose
    sealer answers it in chunks."""
    _check_size(data, _HEADER_BYTES, max_bytes, "encapsulated request")
    header = bytes(data[:_HEADER_BYTES])
    if data[0] != key.key_id or header != _header(key.key_id):
        raise UnknownKey(
            f"encapsulated request header {header.hex()} is not the hybrid suite of key "
            f"{key.key_id} ({_header(key.key_id).hex()}): fetch the current key configuration"
        )
    _check_size(
        data,
        _HEADER_BYTES + _ENC_BYTES + _SECRET_BYTES + _TAG_BYTES,
        max_bytes,
        "encapsulated request",
    )
    sealed = bytes(data[_HEADER_BYTES:])
    try:
        plain = _SUITE.decrypt(
            sealed, _private(key.seed), info=_CHUNKED_REQUEST_INFO + b"\x00" + header
        )
    except (InvalidTag, ValueError):
        raise DecapsulationFailed(
            f"encapsulated request does not open with hybrid relay key {key.key_id}: it was "
            "sealed to another key or altered on the way"
        ) from None
    exchange = ohttp_chunked.ChunkedGatewayExchange(
        key.key_id, _ALGORITHM, sealed[:_ENC_BYTES], plain[:_SECRET_BYTES]
    )
    return plain[_SECRET_BYTES:], exchange


def _header(key_id: int) -> bytes:
    return (
        bytes([key_id])
        + PQ_KEM_ID.to_bytes(2, "big")
        + _KDF_ID.to_bytes(2, "big")
        + _AEAD_ID.to_bytes(2, "big")
    )


def _fresh_seed() -> bytes:
    mlkem_key = mlkem.MLKEM768PrivateKey.generate()
    x_key = x25519.X25519PrivateKey.generate()
    return mlkem_key.private_bytes_raw() + x_key.private_bytes_raw()


def _private(seed: bytes) -> hpke.MLKEM768X25519PrivateKey:
    return hpke.MLKEM768X25519PrivateKey(
        mlkem.MLKEM768PrivateKey.from_seed_bytes(seed[:64]),
        x25519.X25519PrivateKey.from_private_bytes(seed[64:]),
    )


def _public_bytes(seed: bytes) -> bytes:
    mlkem_public = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed[:64]).public_key()
    x_public = x25519.X25519PrivateKey.from_private_bytes(seed[64:]).public_key()
    raw = serialization.Encoding.Raw
    return mlkem_public.public_bytes_raw() + x_public.public_bytes(
        raw, serialization.PublicFormat.Raw
    )


def _public(raw: bytes) -> hpke.MLKEM768X25519PublicKey:
    return hpke.MLKEM768X25519PublicKey(
        mlkem.MLKEM768PublicKey.from_public_bytes(raw[:_MLKEM_PUBLIC_BYTES]),
        x25519.X25519PublicKey.from_public_bytes(raw[_MLKEM_PUBLIC_BYTES:]),
    )


def _check_size(data: bytes, minimum: int, maximum: int, what: str) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise OhttpError(f"{what} must be bytes, got {type(data).__name__}")
    if len(data) > maximum:
        raise OhttpError(f"{what} is {len(data)} bytes, over the limit of {maximum} bytes")
    if len(data) < minimum:
        raise OhttpError(f"{what} is {len(data)} bytes, shorter than the minimum of {minimum}")
