"""Oblivious HTTP request and response encapsulation (RFC 9458), for calls through the relay.

A client seals a binary HTTP request (:mod:`hub.wire.bhttp`) to the device's relay key with
:func:`encapsulate_request` and keeps the returned :class:`ClientExchange` to open the answer. The
device opens it with :func:`decapsulate_request` and seals its answer with the returned
:class:`GatewayExchange`. The relay in between sees a key id, the algorithm ids, an ephemeral
public key and ciphertext: nothing of the call.

Formats, exactly as RFC 9458: the key configuration (§3, and the ``application/ohttp-keys`` list
of §3.2), ``message/ohttp-req`` (§4.1, §4.3: ``hdr || enc || ct`` with HPKE info
``"message/bhttp request" || 0x00 || hdr``) and ``message/ohttp-res`` (§4.4: ``response_nonce ||
ct``, the AEAD key and nonce expanded from the HPKE exporter secret ``"message/bhttp response"``
with ``enc || response_nonce`` as salt).

Why these libraries
-------------------
The response keys come from the request's HPKE *exporter* secret (RFC 9180 §5.3), so the HPKE
implementation must give access to the context, not only single-shot seal and open.
``cryptography``'s ``hpke`` module has single-shot ``encrypt``/``decrypt`` only (no context, no
exporter): it cannot produce RFC 9458 responses. ``pyhpke`` is built on ``cryptography`` (all its
primitives are OpenSSL's through it), has sender and recipient contexts with ``export``, and lets
a test fix the ephemeral key, which RFC 9458 Appendix A's worked example needs. It has only the
classic KEMs. So the request and its exporter go through ``pyhpke`` with DHKEM(X25519,
HKDF-SHA256), the suite RFC 9458's example uses and every OHTTP implementation supports; the
response's HKDF and AEAD are ``cryptography``'s own. Nothing here implements a primitive: this
module writes and reads the RFC's byte layouts and wires the primitives together.

Not post-quantum: a recorded request and its response can be opened by whoever later breaks
X25519. :mod:`hub.wire.ohttp_pq` is the hybrid (ML-KEM-768+X25519) variant: it seals the response
to an ephemeral hybrid key carried inside the request, through ``cryptography``'s single-shot
HPKE (``docs/relay.md`` weighs the two).

Pure apart from randomness: ephemeral keys and response nonces are drawn here unless a test
passes them in (``ephemeral_key=``, ``nonce=``), which only RFC vector tests should do.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey, KEMKeyPair, PyHPKEError

from crypto.errors import DoorwardError

__all__ = [
    "AEAD_AES_128_GCM",
    "AEAD_AES_256_GCM",
    "AEAD_CHACHA20_POLY1305",
    "DEFAULT_ALGORITHMS",
    "DEFAULT_MAX_ENCAPSULATED_BYTES",
    "KDF_HKDF_SHA256",
    "KEM_X25519_HKDF_SHA256",
    "KEYS_MEDIA_TYPE",
    "REQUEST_LABEL",
    "REQUEST_MEDIA_TYPE",
    "RESPONSE_LABEL",
    "RESPONSE_MEDIA_TYPE",
    "ClientExchange",
    "DecapsulationFailed",
    "GatewayExchange",
    "GatewayKey",
    "KeyConfig",
    "OhttpError",
    "SymmetricAlgorithm",
    "UnknownKey",
    "decapsulate_request",
    "encapsulate_request",
]

REQUEST_MEDIA_TYPE: Final = "message/ohttp-req"
RESPONSE_MEDIA_TYPE: Final = "message/ohttp-res"
KEYS_MEDIA_TYPE: Final = "application/ohttp-keys"
REQUEST_LABEL: Final = b"message/bhttp request"
RESPONSE_LABEL: Final = b"message/bhttp response"

# IANA HPKE registry identifiers (RFC 9180 §7).
KEM_X25519_HKDF_SHA256: Final = 0x0020
KDF_HKDF_SHA256: Final = 0x0001
AEAD_AES_128_GCM: Final = 0x0001
AEAD_AES_256_GCM: Final = 0x0002
AEAD_CHACHA20_POLY1305: Final = 0x0003

# A relayed API call: the binary HTTP limit plus room for the encapsulation.
DEFAULT_MAX_ENCAPSULATED_BYTES: Final = (1 << 20) + 1024

_NPK = {KEM_X25519_HKDF_SHA256: 32}  # public key (and enc) length per KEM
_HASH: dict[int, type[hashes.HashAlgorithm]] = {KDF_HKDF_SHA256: hashes.SHA256}
_AEAD_KEY_BYTES = {AEAD_AES_128_GCM: 16, AEAD_AES_256_GCM: 32, AEAD_CHACHA20_POLY1305: 32}
_AEAD_NONCE_BYTES = 12  # all three AEADs
_TAG_BYTES = 16  # all three AEADs
_HEADER_BYTES = 7  # key id (1), KEM id (2), KDF id (2), AEAD id (2)
_PYHPKE_AEAD = {
    AEAD_AES_128_GCM: AEADId.AES128_GCM,
    AEAD_AES_256_GCM: AEADId.AES256_GCM,
    AEAD_CHACHA20_POLY1305: AEADId.CHACHA20_POLY1305,
}


class OhttpError(DoorwardError):
    """An Oblivious HTTP key configuration or encapsulated message is malformed or unusable."""


class UnknownKey(OhttpError):
    """The message names a key id or algorithms this key does not serve: fetch the current key configuration."""


class DecapsulationFailed(OhttpError):
    """The message does not open: sealed to another key, for another request, or altered on the way."""


@dataclass(frozen=True, slots=True)
class SymmetricAlgorithm:
    """An HPKE KDF and AEAD pair that a key configuration accepts."""

    kdf_id: int
    aead_id: int

    def __post_init__(self) -> None:
        if not (0 <= self.kdf_id <= 0xFFFF and 0 <= self.aead_id <= 0xFFFF):
            raise OhttpError(
                f"algorithm ids must fit in 16 bits, got KDF {self.kdf_id} AEAD {self.aead_id}"
            )

    @property
    def supported(self) -> bool:
        """Whether this implementation can use the pair."""
        return self.kdf_id in _HASH and self.aead_id in _AEAD_KEY_BYTES


DEFAULT_ALGORITHMS: Final = (
    SymmetricAlgorithm(KDF_HKDF_SHA256, AEAD_AES_128_GCM),
    SymmetricAlgorithm(KDF_HKDF_SHA256, AEAD_CHACHA20_POLY1305),
)


@dataclass(frozen=True, slots=True)
class KeyConfig:
    """A gateway's public key configuration (RFC 9458 §3.1)."""

    key_id: int
    kem_id: int
    public_key: bytes
    algorithms: tuple[SymmetricAlgorithm, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 0xFF:
            raise OhttpError(f"key id must be 0-255, got {self.key_id}")
        if self.kem_id not in _NPK:
            raise UnknownKey(f"KEM 0x{self.kem_id:04x} is not supported (only DHKEM(X25519))")
        if len(self.public_key) != _NPK[self.kem_id]:
            raise OhttpError(
                f"public key must be {_NPK[self.kem_id]} bytes, got {len(self.public_key)}"
            )
        if not self.algorithms:
            raise OhttpError("key configuration must list at least one KDF/AEAD pair")

    @classmethod
    def parse(cls, data: bytes) -> KeyConfig:
        """Read one key configuration; the input must hold exactly one."""
        if len(data) < 3:
            raise OhttpError(f"key configuration is {len(data)} bytes, shorter than its header")
        key_id, kem_id = data[0], int.from_bytes(data[1:3], "big")
        if kem_id not in _NPK:
            raise UnknownKey(f"key configuration {key_id} uses unsupported KEM 0x{kem_id:04x}")
        npk = _NPK[kem_id]
        end_of_key = 3 + npk
        if len(data) < end_of_key + 2:
            raise OhttpError(f"key configuration {key_id} is truncated in its public key")
        algorithms_length = int.from_bytes(data[end_of_key : end_of_key + 2], "big")
        body = data[end_of_key + 2 :]
        if algorithms_length == 0 or algorithms_length % 4:
            raise OhttpError(
                f"key configuration {key_id}: algorithms length must be a non-zero multiple "
                f"of 4, got {algorithms_length}"
            )
        if len(body) != algorithms_length:
            raise OhttpError(
                f"key configuration {key_id}: algorithms length says {algorithms_length} "
                f"bytes, {len(body)} follow"
            )
        algorithms = tuple(
            SymmetricAlgorithm(
                int.from_bytes(body[i : i + 2], "big"), int.from_bytes(body[i + 2 : i + 4], "big")
            )
            for i in range(0, len(body), 4)
        )
        return cls(key_id, kem_id, bytes(data[3:end_of_key]), algorithms)

    def __bytes__(self) -> bytes:
        algorithms = b"".join(
            a.kdf_id.to_bytes(2, "big") + a.aead_id.to_bytes(2, "big") for a in self.algorithms
        )
        return (
            bytes([self.key_id])
            + self.kem_id.to_bytes(2, "big")
            + self.public_key
            + len(algorithms).to_bytes(2, "big")
            + algorithms
        )

    @staticmethod
    def encode_list(configs: Iterable[KeyConfig]) -> bytes:
        """The ``application/ohttp-keys`` form: each configuration behind a 2-byte length."""
        out = bytearray()
        for config in configs:
            raw = bytes(config)
            out += len(raw).to_bytes(2, "big") + raw
        return bytes(out)

    @staticmethod
    def parse_list(data: bytes) -> tuple[KeyConfig, ...]:
        """Read an ``application/ohttp-keys`` list, skipping configurations with unknown KEMs."""
        configs: list[KeyConfig] = []
        pos = 0
        while pos < len(data):
            if pos + 2 > len(data):
                raise OhttpError("key configuration list is truncated in a length")
            length = int.from_bytes(data[pos : pos + 2], "big")
            if pos + 2 + length > len(data):
                raise OhttpError(
                    f"key configuration list claims {length} bytes, {len(data) - pos - 2} remain"
                )
            # RFC 9458 §3.2: configurations a client cannot use are ignored.
            with contextlib.suppress(UnknownKey):
                configs.append(KeyConfig.parse(data[pos + 2 : pos + 2 + length]))
            pos += 2 + length
        if not configs:
            raise UnknownKey("the key configuration list has no configuration this client can use")
        return tuple(configs)


@dataclass(frozen=True, slots=True)
class GatewayKey:
    """The device's relay key: an X25519 private key, its id and the algorithms it accepts."""

    key_id: int
    private_key: X25519PrivateKey = field(repr=False, compare=False)
    algorithms: tuple[SymmetricAlgorithm, ...] = DEFAULT_ALGORITHMS

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 0xFF:
            raise OhttpError(f"key id must be 0-255, got {self.key_id}")
        if not all(a.supported for a in self.algorithms):
            raise OhttpError("a gateway key may list only algorithm pairs this module supports")

    @classmethod
    def generate(cls, key_id: int) -> GatewayKey:
        """A fresh key pair with the default algorithms."""
        return cls(key_id, X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(
        cls,
        key_id: int,
        raw: bytes,
        algorithms: tuple[SymmetricAlgorithm, ...] = DEFAULT_ALGORITHMS,
    ) -> GatewayKey:
        """Load a 32-byte X25519 private key (the bytes are never echoed in errors)."""
        if len(raw) != 32:
            raise OhttpError(f"relay private key must be 32 bytes, got {len(raw)}")
        return cls(key_id, X25519PrivateKey.from_private_bytes(raw), algorithms)

    def private_bytes(self) -> bytes:
        """The raw private key, for the device's key file only."""
        return self.private_key.private_bytes_raw()

    def config(self) -> KeyConfig:
        """The public key configuration that clients seal requests to."""
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return KeyConfig(self.key_id, KEM_X25519_HKDF_SHA256, public, self.algorithms)


@dataclass(frozen=True, slots=True)
class ClientExchange:
    """What a client keeps after sealing a request, to open that request's response."""

    algorithm: SymmetricAlgorithm
    enc: bytes
    secret: bytes = field(repr=False)

    def open_response(
        self, data: bytes, *, max_bytes: int = DEFAULT_MAX_ENCAPSULATED_BYTES
    ) -> bytes:
        """Open a ``message/ohttp-res`` (RFC 9458 §4.4) and return the binary HTTP response."""
        nonce_bytes = _response_nonce_bytes(self.algorithm)
        _check_size(data, nonce_bytes + _TAG_BYTES, max_bytes, "encapsulated response")
        nonce, sealed = bytes(data[:nonce_bytes]), bytes(data[nonce_bytes:])
        aead, aead_nonce = _response_aead(self.algorithm, self.secret, self.enc, nonce)
        try:
            return aead.decrypt(aead_nonce, sealed, None)
        except InvalidTag:
            raise DecapsulationFailed(
                "encapsulated response does not open: it answers another request or was "
                "altered on the way"
            ) from None


@dataclass(frozen=True, slots=True)
class GatewayExchange:
    """What the gateway keeps after opening a request, to seal that request's response."""

    key_id: int
    algorithm: SymmetricAlgorithm
    enc: bytes
    secret: bytes = field(repr=False)

    def seal_response(self, response: bytes, *, nonce: bytes | None = None) -> bytes:
        """Seal a binary HTTP response as ``message/ohttp-res``; ``nonce`` is for RFC vector tests only."""
        nonce_bytes = _response_nonce_bytes(self.algorithm)
        if nonce is None:
            nonce = secrets.token_bytes(nonce_bytes)
        elif len(nonce) != nonce_bytes:
            raise OhttpError(f"response nonce must be {nonce_bytes} bytes, got {len(nonce)}")
        aead, aead_nonce = _response_aead(self.algorithm, self.secret, self.enc, nonce)
        return nonce + aead.encrypt(aead_nonce, response, None)


def encapsulate_request(
    config: KeyConfig,
    request: bytes,
    *,
    algorithm: SymmetricAlgorithm | None = None,
    ephemeral_key: X25519PrivateKey | None = None,
) -> tuple[bytes, ClientExchange]:
    """Seal a binary HTTP request to ``config`` as ``message/ohttp-req``; ``ephemeral_key`` is for RFC vector tests only."""
    if algorithm is None:
        usable = [a for a in config.algorithms if a.supported]
        if not usable:
            raise UnknownKey(
                f"key configuration {config.key_id} lists no KDF/AEAD pair this client supports"
            )
        algorithm = usable[0]
    elif algorithm not in config.algorithms or not algorithm.supported:
        raise UnknownKey(
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
    sealed = context.seal(request)
    secret = context.export(RESPONSE_LABEL, _response_nonce_bytes(algorithm))
    return header + enc + sealed, ClientExchange(algorithm, enc, secret)


def decapsulate_request(
    keys: GatewayKey | Iterable[GatewayKey],
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_ENCAPSULATED_BYTES,
) -> tuple[bytes, GatewayExchange]:
    """Open a ``message/ohttp-req`` with the gateway key it names; return the request and the exchange."""
    by_id = {key.key_id: key for key in ([keys] if isinstance(keys, GatewayKey) else keys)}
    _check_size(data, _HEADER_BYTES, max_bytes, "encapsulated request")
    key_id = data[0]
    kem_id = int.from_bytes(data[1:3], "big")
    algorithm = SymmetricAlgorithm(
        int.from_bytes(data[3:5], "big"), int.from_bytes(data[5:7], "big")
    )
    key = by_id.get(key_id)
    if key is None:
        served = ", ".join(str(k) for k in sorted(by_id)) or "none"
        raise UnknownKey(
            f"encapsulated request names key id {key_id}, this gateway serves {served}: "
            "fetch the current key configuration"
        )
    if kem_id != KEM_X25519_HKDF_SHA256 or algorithm not in key.algorithms:
        raise UnknownKey(
            f"encapsulated request uses KEM 0x{kem_id:04x}, KDF 0x{algorithm.kdf_id:04x}, "
            f"AEAD 0x{algorithm.aead_id:04x}, which key {key_id} does not accept"
        )
    npk = _NPK[kem_id]
    _check_size(data, _HEADER_BYTES + npk + _TAG_BYTES, max_bytes, "encapsulated request")
    header = bytes(data[:_HEADER_BYTES])
    enc = bytes(data[_HEADER_BYTES : _HEADER_BYTES + npk])
    sealed = bytes(data[_HEADER_BYTES + npk :])
    suite = _suite(algorithm)
    try:
        private = KEMKey.from_pyca_cryptography_key(key.private_key)
        context = suite.create_recipient_context(enc, private, _info(header))
        request = context.open(sealed)
    except (ValueError, PyHPKEError):
        # A bad share (ValueError: e.g. a low-order point) and a failed open look the same to
        # the sender: neither says which, so neither can be used as an oracle.
        raise DecapsulationFailed(
            f"encapsulated request does not open with relay key {key_id}: it was sealed to "
            "another key or altered on the way"
        ) from None
    secret = context.export(RESPONSE_LABEL, _response_nonce_bytes(algorithm))
    return request, GatewayExchange(key_id, algorithm, enc, secret)


def _header(key_id: int, kem_id: int, algorithm: SymmetricAlgorithm) -> bytes:
    return (
        bytes([key_id])
        + kem_id.to_bytes(2, "big")
        + algorithm.kdf_id.to_bytes(2, "big")
        + algorithm.aead_id.to_bytes(2, "big")
    )


def _info(header: bytes) -> bytes:
    # RFC 9458 §4.3: info = "message/bhttp request" || 0x00 || hdr.
    return REQUEST_LABEL + b"\x00" + header


def _suite(algorithm: SymmetricAlgorithm) -> CipherSuite:
    kdf = {KDF_HKDF_SHA256: KDFId.HKDF_SHA256}[algorithm.kdf_id]
    return CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, kdf, _PYHPKE_AEAD[algorithm.aead_id])


def _response_nonce_bytes(algorithm: SymmetricAlgorithm) -> int:
    # RFC 9458 §4.4: the response nonce and the exported secret are max(Nn, Nk) bytes.
    return max(_AEAD_NONCE_BYTES, _AEAD_KEY_BYTES[algorithm.aead_id])


def _response_aead(
    algorithm: SymmetricAlgorithm, secret: bytes, enc: bytes, nonce: bytes
) -> tuple[AESGCM | ChaCha20Poly1305, bytes]:
    # RFC 9458 §4.4: salt = enc || response_nonce; prk = Extract(salt, secret);
    # aead_key = Expand(prk, "key", Nk); aead_nonce = Expand(prk, "nonce", Nn).
    salt = enc + nonce
    hash_algorithm = _HASH[algorithm.kdf_id]()
    key_bytes = _AEAD_KEY_BYTES[algorithm.aead_id]
    key = HKDF(hash_algorithm, key_bytes, salt, b"key").derive(secret)
    aead_nonce = HKDF(hash_algorithm, _AEAD_NONCE_BYTES, salt, b"nonce").derive(secret)
    if algorithm.aead_id == AEAD_CHACHA20_POLY1305:
        return ChaCha20Poly1305(key), aead_nonce
    return AESGCM(key), aead_nonce


def _check_size(data: bytes, minimum: int, maximum: int, what: str) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise OhttpError(f"{what} must be bytes, got {type(data).__name__}")
    if len(data) > maximum:
        raise OhttpError(f"{what} is {len(data)} bytes, over the limit of {maximum} bytes")
    if len(data) < minimum:
        raise OhttpError(f"{what} is {len(data)} bytes, shorter than the minimum of {minimum}")
