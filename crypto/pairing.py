"""Sans-I/O pairing state machines: the phone and the device agree on a key with SPAKE2 over the
setup code, confirm it explicitly, then exchange long-term keys encrypted under it.

Four messages, canonical JSON, the phone speaks first::

    phone                                                   device
    pake1   {phone key id, device id, SPAKE2 A message}  ->
                                                   <-  pake2   {SPAKE2 B message, device MAC}
    confirm {phone MAC, box(phone keys, proof)}      ->
                                                   <-  keys    {box(device keys)}

SPAKE2 binds both identities: idA = ``doorward-phone:<phone key id>``, idB =
``doorward-device:<device id>``. The phone knows the device id from the QR code or discovery and
its own key id. From the SPAKE2 key and a hash of the transcript, HKDF-SHA256 derives one key per
purpose and direction: a confirmation MAC key for each side and an AEAD key for each direction.
The phone reveals nothing (not even its MAC) before it has checked the device's MAC; the device
reveals its keys only after checking the phone's.

The phone proves it holds the Ed25519 key it registers: ``proof`` inside the confirm box is its
Ed25519 signature over ``"doorward pairing v2 phone key proof" || 0x00 || transcript hash ||
canonical JSON {signing_key, recipient, name}``. The transcript hash covers both identities (the
phone's key id and the device id) and both SPAKE2 messages, so a proof is good for this session
only; the device checks it before it registers anything. Knowing the setup code is therefore not
enough to register another phone's public key (with one's own age recipient): that needs the
other phone's private key too.

The device's ``keys`` box holds its Ed25519 key and TLS fingerprint and, when it has them, its
relay key configuration (RFC 9458 §3) and the URL of the relay broker's client listener: the
box's key comes from the confirmed SPAKE2 session, so these are as authentic as the signing key
and the phone pins them together. A phone accepts a box without the relay fields (a device with
no relay key).

Any bad, tampered, replayed or out-of-order message moves a machine to the terminal ``FAILED``
state and raises :class:`~crypto.errors.PairingFailed` with a remedy for the person pairing. A
wrong code shows up as a confirmation MAC mismatch, and an attacker learns one yes/no per online
attempt: 1 in 10^8 per guess (the hub caps attempts at 20).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B, SPAKEError
from spake2.ed25519_basic import NotOnCurve

from crypto import age
from crypto.errors import CryptoError, PairingFailed
from crypto.keys import device_id, key_id
from crypto.setup_code import SetupCode
from crypto.signed import b64url, b64url_decode, canonical_json

__all__ = [
    "MAX_MESSAGE_BYTES",
    "DeviceKeys",
    "DevicePairing",
    "FailureReason",
    "PairingState",
    "PhoneKeys",
    "PhonePairing",
]

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 2  # 2: the confirm box carries the phone's proof of its signing key
MAX_MESSAGE_BYTES = 16 * 1024  # a hybrid age recipient is ~2 KB; nothing legitimate is larger
_MAX_RELAY_KEY_CONFIG_BYTES = 2048  # an X25519 one is 41 bytes; a hybrid ML-KEM one about 1.2 KB
_MAX_RELAY_URL_CHARS = 256
_MAX_NAME_CHARS = 64
_MAX_RECIPIENT_CHARS = 4096
_PAKE_MESSAGE_BYTES = 33  # spake2's side byte + one Ed25519 group element
_KDF_PREFIX = b"doorward pairing v1 "
_PROOF_CONTEXT = b"doorward pairing v2 phone key proof\x00"
_SIGNATURE_BYTES = 64
_RELAY_FIELDS = frozenset({"relay_key_config", "relay_url"})
# Each AEAD key below encrypts exactly one message, so a fixed all-zero nonce never repeats.
_NONCE = bytes(12)

Entropy = Callable[[int], bytes]


class PairingState(enum.Enum):
    """Where a pairing machine is; FAILED is terminal.

    The phone goes START, SENT_PAKE, SENT_CONFIRM, PAIRED; the device skips SENT_CONFIRM.
    """

    START = "start"
    SENT_PAKE = "sent_pake"
    SENT_CONFIRM = "sent_confirm"
    PAIRED = "paired"
    FAILED = "failed"


class FailureReason(enum.Enum):
    """Why a machine failed (its ``failure``); the PairingFailed message gives the remedy."""

    WRONG_CODE = "wrong_code"
    MALFORMED = "malformed"
    OUT_OF_ORDER = "out_of_order"
    TAMPERED = "tampered"
    KEY_MISMATCH = "key_mismatch"
    KEY_NOT_PROVEN = "key_not_proven"


_REMEDIES = {
    FailureReason.WRONG_CODE: (
        "the setup code was typed wrong, or someone tried to guess it; "
        "check the code on the doorbell and try again"
    ),
    FailureReason.MALFORMED: "a pairing message was malformed ({detail}); start pairing again",
    FailureReason.OUT_OF_ORDER: (
        "a pairing message arrived out of order ({detail}); start pairing again"
    ),
    FailureReason.TAMPERED: "a pairing message was altered on the way; start pairing again",
    FailureReason.KEY_MISMATCH: (
        "the doorbell's keys do not match {detail}; this may not be your doorbell: "
        "check that you are on your home network and scan the code again"
    ),
    FailureReason.KEY_NOT_PROVEN: (
        "the phone did not prove it holds the signing key it presented; "
        "pair from the phone that holds that key"
    ),
}


@dataclass(frozen=True, slots=True)
class PhoneKeys:
    """What the device learns about a paired phone."""

    signing_key: Ed25519PublicKey
    recipient: str
    name: str

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and 0 < len(self.name) <= _MAX_NAME_CHARS):
            raise ValueError(f"phone name must be 1-{_MAX_NAME_CHARS} characters")
        if not self.name.isprintable():
            raise ValueError("phone name must not contain control characters")
        if not (
            isinstance(self.recipient, str)
            and self.recipient.startswith("age1")
            and self.recipient.isascii()
            and self.recipient.isalnum()
            and len(self.recipient) <= _MAX_RECIPIENT_CHARS
        ):
            raise ValueError(
                f"age recipient must be an age1... string, got {self.recipient[:16]!r}"
            )

    @property
    def key_id(self) -> str:
        """The phone's RFC 7638 key id, from its signing key."""
        return key_id(self.signing_key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PhoneKeys) and (self.key_id, self.recipient, self.name) == (
            other.key_id,
            other.recipient,
            other.name,
        )

    def __hash__(self) -> int:
        return hash((self.key_id, self.recipient, self.name))

    def __repr__(self) -> str:
        return f"PhoneKeys(key_id={self.key_id!r}, name={self.name!r})"


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """What the phone learns about the device: its signing key, its TLS pin and, when the device
    has them, its relay key configuration (RFC 9458 §3, opaque bytes here) and the relay URL
    clients connect to."""

    signing_key: Ed25519PublicKey
    tls_fingerprint: str
    relay_key_config: bytes | None = None
    relay_url: str | None = None

    def __post_init__(self) -> None:
        config = self.relay_key_config
        if config is not None and not (
            isinstance(config, bytes) and 0 < len(config) <= _MAX_RELAY_KEY_CONFIG_BYTES
        ):
            raise ValueError(
                f"relay key configuration must be 1-{_MAX_RELAY_KEY_CONFIG_BYTES} bytes"
            )
        url = self.relay_url
        if url is not None and not (
            isinstance(url, str)
            and url.startswith("mqtts://")
            and len(url) <= _MAX_RELAY_URL_CHARS
            and url.isascii()
            and url.isprintable()
            and " " not in url
        ):
            raise ValueError(
                f"relay url must be mqtts://HOST:PORT of at most {_MAX_RELAY_URL_CHARS} characters"
            )

    @property
    def device_id(self) -> str:
        """The device id derived from its signing key (the one the QR code names)."""
        return device_id(self.signing_key)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DeviceKeys)
            and self.signing_key.public_bytes_raw() == other.signing_key.public_bytes_raw()
            and self.tls_fingerprint == other.tls_fingerprint
            and self.relay_key_config == other.relay_key_config
            and self.relay_url == other.relay_url
        )

    def __hash__(self) -> int:
        return hash((self.signing_key.public_bytes_raw(), self.tls_fingerprint))

    def payload(self) -> dict[str, str]:
        """The fields of the ``keys`` box (the relay ones only when the device has them)."""
        body = {
            "signing_key": b64url(self.signing_key.public_bytes_raw()),
            "tls_fingerprint": self.tls_fingerprint,
        }
        if self.relay_key_config is not None:
            body["relay_key_config"] = b64url(self.relay_key_config)
        if self.relay_url is not None:
            body["relay_url"] = self.relay_url
        return body

    def __repr__(self) -> str:
        return f"DeviceKeys(device_id={self.device_id!r}, tls_fingerprint={self.tls_fingerprint!r})"


class _Machine:
    side = ""

    def __init__(self) -> None:
        self.state = PairingState.START
        self.failure: FailureReason | None = None
        self.history: list[PairingState] = [PairingState.START]

    def _set_state(self, state: PairingState) -> None:
        logger.info("pairing.state side=%s old=%s new=%s", self.side, self.state.value, state.value)
        self.state = state
        self.history.append(state)

    def _fail(self, reason: FailureReason, detail: str = "") -> PairingFailed:
        self.failure = reason
        logger.warning("pairing.failed side=%s reason=%s", self.side, reason.value)
        if self.state is not PairingState.FAILED:
            self._set_state(PairingState.FAILED)
        return PairingFailed("pairing failed: " + _REMEDIES[reason].format(detail=detail))

    def _expect(self, state: PairingState, message_type: str) -> None:
        if self.state is PairingState.FAILED:
            raise PairingFailed("pairing failed: this attempt has already failed; start again")
        if self.state is not state:
            raise self._fail(
                FailureReason.OUT_OF_ORDER, f"got {message_type} in state {self.state.value}"
            )

    def _read(
        self, data: bytes, message_type: str, fields: dict[str, int], text: tuple[str, ...] = ()
    ) -> tuple[dict[str, bytes], dict[str, Any]]:
        """Parse one message with exactly the given fields.

        ``fields`` are unpadded base64url of the given size (0: any); ``text`` fields are
        returned as they are, in the second dict.
        """
        try:
            message = _parse_json(data)
        except ValueError as exc:
            raise self._fail(FailureReason.MALFORMED, str(exc)) from None
        expected = {"v", "type", *fields, *text}
        if message.get("type") != message_type and isinstance(message.get("type"), str):
            raise self._fail(
                FailureReason.OUT_OF_ORDER, f"expected {message_type}, got {message['type']:.32}"
            )
        if set(message) != expected:
            raise self._fail(
                FailureReason.MALFORMED, f"{message_type} must have fields {sorted(expected)}"
            )
        if message["v"] != PROTOCOL_VERSION:
            raise self._fail(
                FailureReason.MALFORMED, f"protocol version must be {PROTOCOL_VERSION}"
            )
        decoded: dict[str, bytes] = {}
        for name, size in fields.items():
            try:
                raw = b64url_decode(message[name])
            except ValueError:
                raise self._fail(FailureReason.MALFORMED, f"{name} must be base64url") from None
            if size and len(raw) != size:
                raise self._fail(FailureReason.MALFORMED, f"{name} must be {size} bytes")
            decoded[name] = raw
        return decoded, {name: message[name] for name in text}

    def _finish_pake(self, pake: Any, inbound: bytes) -> bytes:
        try:
            return bytes(pake.finish(inbound))
        except (SPAKEError, NotOnCurve, ValueError, TypeError):
            raise self._fail(FailureReason.MALFORMED, "not a SPAKE2 message") from None


class PhonePairing(_Machine):
    """The phone's side: call :meth:`start`, then :meth:`receive_pake`, then :meth:`receive_keys`.

    ``phone_signing_key`` is the phone's private Ed25519 key: its public half is registered, and
    it signs the session's transcript to prove the phone holds it."""

    side = "phone"

    def __init__(
        self,
        code: SetupCode,
        *,
        phone_signing_key: Ed25519PrivateKey,
        recipient: str,
        name: str,
        device_id: str,
        expected_fingerprint: str | None = None,
        entropy: Entropy | None = None,
    ) -> None:
        super().__init__()
        self._signer = phone_signing_key
        self._keys = PhoneKeys(phone_signing_key.public_key(), recipient, name)
        self._device_id = device_id
        self._expected_fingerprint = expected_fingerprint
        self._ids = _ids(self._keys.key_id, device_id)
        extra = {} if entropy is None else {"entropy_f": entropy}
        self._pake = SPAKE2_A(code.password(), idA=self._ids[0], idB=self._ids[1], **extra)
        self._outbound = b""
        self._box_in_key = b""
        self.device_keys: DeviceKeys | None = None

    def start(self) -> bytes:
        """The first message, ``pake1``."""
        self._expect(PairingState.START, "start")
        self._outbound = bytes(self._pake.start())
        message = {
            "v": PROTOCOL_VERSION,
            "type": "pake1",
            "phone": self._keys.key_id,
            "device": self._device_id,
            "pake": b64url(self._outbound),
        }
        self._set_state(PairingState.SENT_PAKE)
        return canonical_json(message)

    def receive_pake(self, data: bytes) -> bytes:
        """Check the device's ``pake2`` and its MAC; return ``confirm`` carrying our keys."""
        self._expect(PairingState.SENT_PAKE, "pake2")
        fields, _ = self._read(data, "pake2", {"pake": _PAKE_MESSAGE_BYTES, "confirm": 32})
        secret = self._finish_pake(self._pake, fields["pake"])
        keys = _Keys.derive(secret, self._ids, self._outbound, fields["pake"])
        if not hmac.compare_digest(keys.mac("device"), fields["confirm"]):
            raise self._fail(FailureReason.WRONG_CODE)
        self._box_in_key = keys.device_to_phone
        registered = {
            "signing_key": b64url(self._keys.signing_key.public_bytes_raw()),
            "recipient": self._keys.recipient,
            "name": self._keys.name,
        }
        proof = self._signer.sign(_proof_message(keys.transcript, registered))
        payload = canonical_json({**registered, "proof": b64url(proof)})
        box = ChaCha20Poly1305(keys.phone_to_device).encrypt(_NONCE, payload, b"confirm")
        message = {
            "v": PROTOCOL_VERSION,
            "type": "confirm",
            "confirm": b64url(keys.mac("phone")),
            "box": b64url(box),
        }
        self._set_state(PairingState.SENT_CONFIRM)
        return canonical_json(message)

    def receive_keys(self, data: bytes) -> DeviceKeys:
        """Open the device's ``keys`` message and check it against what we already knew."""
        self._expect(PairingState.SENT_CONFIRM, "keys")
        fields, _ = self._read(data, "keys", {"box": 0})
        try:
            payload = ChaCha20Poly1305(self._box_in_key).decrypt(_NONCE, fields["box"], b"keys")
        except InvalidTag:
            raise self._fail(FailureReason.TAMPERED) from None
        body = self._payload(payload, {"signing_key", "tls_fingerprint"}, _RELAY_FIELDS)
        try:
            signing_key = Ed25519PublicKey.from_public_bytes(b64url_decode(body["signing_key"]))
        except ValueError:
            raise self._fail(FailureReason.MALFORMED, "signing_key is not Ed25519") from None
        fingerprint = body["tls_fingerprint"]
        if not isinstance(fingerprint, str) or len(fingerprint) != 43:
            raise self._fail(FailureReason.MALFORMED, "tls_fingerprint must be 43 characters")
        try:
            relay_config = body.get("relay_key_config")
            device = DeviceKeys(
                signing_key,
                fingerprint,
                b64url_decode(relay_config) if relay_config is not None else None,
                body.get("relay_url"),
            )
        except (ValueError, TypeError) as exc:
            raise self._fail(FailureReason.MALFORMED, str(exc)) from None
        if device.device_id != self._device_id:
            raise self._fail(FailureReason.KEY_MISMATCH, f"the device id {self._device_id}")
        if self._expected_fingerprint is not None and not hmac.compare_digest(
            fingerprint.encode(), self._expected_fingerprint.encode()
        ):
            raise self._fail(FailureReason.KEY_MISMATCH, "the TLS fingerprint in its QR code")
        self.device_keys = device
        self._set_state(PairingState.PAIRED)
        return device

    def _payload(
        self, payload: bytes, names: set[str], optional: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        try:
            body = _parse_json(payload)
        except ValueError as exc:
            raise self._fail(FailureReason.MALFORMED, str(exc)) from None
        if not names <= set(body) <= names | optional:
            raise self._fail(
                FailureReason.MALFORMED,
                f"keys must have fields {sorted(names)}, and may have {sorted(optional)}",
            )
        return body


class DevicePairing(_Machine):
    """The device's side: :meth:`receive_pake` answers ``pake1``, :meth:`receive_confirm` ends."""

    side = "device"

    def __init__(
        self,
        code: SetupCode,
        *,
        device_signing_key: Ed25519PublicKey,
        tls_fingerprint: str,
        relay_key_config: bytes | None = None,
        relay_url: str | None = None,
        entropy: Entropy | None = None,
    ) -> None:
        super().__init__()
        self._code = code
        self._keys = DeviceKeys(device_signing_key, tls_fingerprint, relay_key_config, relay_url)
        self._entropy = entropy
        self._box_keys: _Keys | None = None
        self._phone_id = ""
        self.phone_keys: PhoneKeys | None = None

    def receive_pake(self, data: bytes) -> bytes:
        """Answer the phone's ``pake1`` with ``pake2`` and the device's confirmation MAC."""
        self._expect(PairingState.START, "pake1")
        fields, text = self._read(
            data, "pake1", {"pake": _PAKE_MESSAGE_BYTES}, text=("phone", "device")
        )
        phone = text["phone"]
        if not isinstance(phone, str) or not 0 < len(phone) <= 64 or not phone.isascii():
            raise self._fail(FailureReason.MALFORMED, "phone must be a key id")
        if text["device"] != self._keys.device_id:
            raise self._fail(FailureReason.MALFORMED, "pake1 is addressed to another device")
        self._phone_id = phone
        ids = _ids(phone, self._keys.device_id)
        extra = {} if self._entropy is None else {"entropy_f": self._entropy}
        pake = SPAKE2_B(self._code.password(), idA=ids[0], idB=ids[1], **extra)
        outbound = bytes(pake.start())
        secret = self._finish_pake(pake, fields["pake"])
        self._box_keys = _Keys.derive(secret, ids, fields["pake"], outbound)
        reply = {
            "v": PROTOCOL_VERSION,
            "type": "pake2",
            "pake": b64url(outbound),
            "confirm": b64url(self._box_keys.mac("device")),
        }
        self._set_state(PairingState.SENT_PAKE)
        return canonical_json(reply)

    def receive_confirm(self, data: bytes) -> tuple[PhoneKeys, bytes]:
        """Check the phone's MAC and keys; return them and the final ``keys`` message."""
        self._expect(PairingState.SENT_PAKE, "confirm")
        fields, _ = self._read(data, "confirm", {"confirm": 32, "box": 0})
        keys = self._box_keys
        assert keys is not None  # set with SENT_PAKE
        if not hmac.compare_digest(keys.mac("phone"), fields["confirm"]):
            raise self._fail(FailureReason.WRONG_CODE)
        try:
            payload = ChaCha20Poly1305(keys.phone_to_device).decrypt(
                _NONCE, fields["box"], b"confirm"
            )
        except InvalidTag:
            raise self._fail(FailureReason.TAMPERED) from None
        try:
            body = _parse_json(payload)
            if set(body) != {"signing_key", "recipient", "name", "proof"}:
                raise ValueError("confirm must carry signing_key, recipient, name and proof")
            signing_key = Ed25519PublicKey.from_public_bytes(b64url_decode(body["signing_key"]))
            phone = PhoneKeys(signing_key, body["recipient"], body["name"])
            age.parse_recipient(phone.recipient)
            proof = b64url_decode(body["proof"])
            if len(proof) != _SIGNATURE_BYTES:
                raise ValueError(f"proof must be a {_SIGNATURE_BYTES}-byte Ed25519 signature")
        except (ValueError, TypeError) as exc:
            raise self._fail(FailureReason.MALFORMED, str(exc)) from None
        except CryptoError:
            raise self._fail(FailureReason.MALFORMED, "recipient is not an age recipient") from None
        if phone.key_id != self._phone_id:
            raise self._fail(FailureReason.MALFORMED, "the phone's key does not match its key id")
        registered = {k: body[k] for k in ("signing_key", "recipient", "name")}
        try:
            signing_key.verify(proof, _proof_message(keys.transcript, registered))
        except InvalidSignature:
            raise self._fail(FailureReason.KEY_NOT_PROVEN) from None
        payload = canonical_json(self._keys.payload())
        box = ChaCha20Poly1305(keys.device_to_phone).encrypt(_NONCE, payload, b"keys")
        self.phone_keys = phone
        self._box_keys = None
        self._set_state(PairingState.PAIRED)
        return phone, canonical_json({"v": PROTOCOL_VERSION, "type": "keys", "box": b64url(box)})


@dataclass(frozen=True, slots=True)
class _Keys:
    """Every key derived from one SPAKE2 session, each bound to its purpose and direction."""

    confirm_phone: bytes = field(repr=False)
    confirm_device: bytes = field(repr=False)
    phone_to_device: bytes = field(repr=False)
    device_to_phone: bytes = field(repr=False)
    transcript: bytes

    @classmethod
    def derive(cls, secret: bytes, ids: tuple[bytes, bytes], pake_a: bytes, pake_b: bytes) -> _Keys:
        transcript = hashlib.sha256(
            b"".join(len(part).to_bytes(4, "big") + part for part in (*ids, pake_a, pake_b))
        ).digest()

        def kdf(purpose: bytes) -> bytes:
            return HKDF(hashes.SHA256(), 32, transcript, _KDF_PREFIX + purpose).derive(secret)

        return cls(
            confirm_phone=kdf(b"confirm phone"),
            confirm_device=kdf(b"confirm device"),
            phone_to_device=kdf(b"box phone->device"),
            device_to_phone=kdf(b"box device->phone"),
            transcript=transcript,
        )

    def mac(self, side: str) -> bytes:
        key = self.confirm_phone if side == "phone" else self.confirm_device
        return hmac.new(key, self.transcript, hashlib.sha256).digest()


def _proof_message(transcript: bytes, registered: dict[str, str]) -> bytes:
    """What the phone signs to prove it holds its signing key: bound to this session's
    transcript (both identities, both SPAKE2 messages) and to everything it registers."""
    return _PROOF_CONTEXT + transcript + canonical_json(registered)


def _ids(phone_key_id: str, device: str) -> tuple[bytes, bytes]:
    return (b"doorward-phone:" + phone_key_id.encode(), b"doorward-device:" + device.encode())


def _parse_json(data: bytes) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray):
        raise ValueError("message must be bytes")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message must be at most {MAX_MESSAGE_BYTES} bytes")
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # also too deeply nested, or an integer too long
        raise ValueError("message is not JSON") from None
    if not isinstance(value, dict):
        raise ValueError("message must be a JSON object")
    return value
