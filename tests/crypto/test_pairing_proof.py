"""Pairing proves possession of the registered signing key: the phone signs the session transcript
inside the confirm box, and the device verifies it before it accepts any phone key."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from crypto import age
from crypto.errors import PairingFailed
from crypto.keys import device_id
from crypto.pairing import DevicePairing, FailureReason, PairingState, PhonePairing, _Keys
from crypto.setup_code import SetupCode
from crypto.signed import b64url, b64url_decode, canonical_json

CODE = SetupCode("48151623")
FP = b64url(bytes(range(32)))
NOT_PROVEN = (
    "pairing failed: the phone did not prove it holds the signing key it presented; "
    "pair from the phone that holds that key"
)
CONTEXT = b"doorward pairing v2 phone key proof\x00"


class BorrowedKey:
    """The victim's public key, but only the attacker's private key to sign with."""

    def __init__(self, victim: Ed25519PublicKey, own: Ed25519PrivateKey) -> None:
        self._victim, self._own = victim, own

    def public_key(self) -> Ed25519PublicKey:
        return self._victim

    def sign(self, data: bytes) -> bytes:
        return self._own.sign(data)


def _device(device_key: Ed25519PrivateKey) -> DevicePairing:
    return DevicePairing(CODE, device_signing_key=device_key.public_key(), tls_fingerprint=FP)


def _phone(key: object, device_key: Ed25519PrivateKey, recipient: str) -> PhonePairing:
    return PhonePairing(
        CODE,
        phone_signing_key=key,  # type: ignore[arg-type]
        recipient=recipient,
        name="phone",
        device_id=device_id(device_key.public_key()),
    )


def _session_keys(phone: PhonePairing, pake2: bytes) -> _Keys:
    """The keys of the phone's session (what anyone who knows the code can compute)."""
    inbound = b64url_decode(json.loads(pake2)["pake"])
    return _Keys.derive(phone._pake.finish(inbound), phone._ids, phone._outbound, inbound)


def _confirm(keys: _Keys, payload: dict[str, object]) -> bytes:
    """A confirm message carrying ``payload`` in its box."""
    box = ChaCha20Poly1305(keys.phone_to_device).encrypt(
        bytes(12), canonical_json(payload), b"confirm"
    )
    return canonical_json(
        {"v": 2, "type": "confirm", "confirm": b64url(keys.mac("phone")), "box": b64url(box)}
    )


def _registered(phone_key: Ed25519PrivateKey, recipient: str) -> dict[str, str]:
    return {
        "signing_key": b64url(phone_key.public_key().public_bytes_raw()),
        "recipient": recipient,
        "name": "phone",
    }


def _proof(phone_key: Ed25519PrivateKey, keys: _Keys, registered: dict[str, str]) -> str:
    return b64url(phone_key.sign(CONTEXT + keys.transcript + canonical_json(registered)))


def test_code_holder_cannot_register_someone_elses_key() -> None:
    victim, attacker, device_key = (Ed25519PrivateKey.generate() for _ in range(3))
    own_recipient = str(age.X25519Identity.generate().recipient())
    device = _device(device_key)
    hostile = _phone(BorrowedKey(victim.public_key(), attacker), device_key, own_recipient)
    confirm = hostile.receive_pake(device.receive_pake(hostile.start()))
    with pytest.raises(PairingFailed) as caught:
        device.receive_confirm(confirm)
    assert str(caught.value) == NOT_PROVEN
    assert device.failure is FailureReason.KEY_NOT_PROVEN
    assert device.state is PairingState.FAILED
    assert device.phone_keys is None


def test_a_proof_from_another_session_is_refused() -> None:
    phone_key, device_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    recipient = str(age.X25519Identity.generate().recipient())
    registered = _registered(phone_key, recipient)
    # The victim's genuine proof from an earlier session...
    earlier = _phone(phone_key, device_key, recipient)
    earlier_keys = _session_keys(earlier, _device(device_key).receive_pake(earlier.start()))
    old_proof = _proof(phone_key, earlier_keys, registered)
    # ...replayed in a new session by someone who knows the code.
    replayer = _phone(phone_key, device_key, recipient)
    device = _device(device_key)
    keys = _session_keys(replayer, device.receive_pake(replayer.start()))
    with pytest.raises(PairingFailed) as caught:
        device.receive_confirm(_confirm(keys, {**registered, "proof": old_proof}))
    assert str(caught.value) == NOT_PROVEN
    assert device.phone_keys is None


def test_a_proof_covers_the_recipient_and_name() -> None:
    phone_key, device_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    recipient = str(age.X25519Identity.generate().recipient())
    other = str(age.X25519Identity.generate().recipient())
    registered = _registered(phone_key, recipient)
    for changed in ({"recipient": other}, {"name": "not the phone"}):
        phone = _phone(phone_key, device_key, recipient)
        device = _device(device_key)
        keys = _session_keys(phone, device.receive_pake(phone.start()))
        proof = _proof(phone_key, keys, registered)
        with pytest.raises(PairingFailed) as caught:
            device.receive_confirm(_confirm(keys, {**registered, **changed, "proof": proof}))
        assert str(caught.value) == NOT_PROVEN


def test_the_phones_proof_is_the_documented_signature() -> None:
    phone_key, device_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    recipient = str(age.X25519Identity.generate().recipient())
    phone = _phone(phone_key, device_key, recipient)
    device = _device(device_key)
    pake2 = device.receive_pake(phone.start())
    keys = device._box_keys
    assert keys is not None
    confirm = phone.receive_pake(pake2)
    box = b64url_decode(json.loads(confirm)["box"])
    sent = json.loads(ChaCha20Poly1305(keys.phone_to_device).decrypt(bytes(12), box, b"confirm"))
    registered = _registered(phone_key, recipient)
    # Ed25519 is deterministic: the phone signed exactly the documented message.
    assert sent == {**registered, "proof": _proof(phone_key, keys, registered)}
    phone_keys, _ = device.receive_confirm(confirm)
    assert phone_keys.signing_key.public_bytes_raw() == phone_key.public_key().public_bytes_raw()


@pytest.mark.parametrize("proof", ["", "AAAA", b64url(bytes(63)), 7])
def test_a_malformed_proof_is_refused(proof: object) -> None:
    phone_key, device_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    recipient = str(age.X25519Identity.generate().recipient())
    phone = _phone(phone_key, device_key, recipient)
    device = _device(device_key)
    keys = _session_keys(phone, device.receive_pake(phone.start()))
    with pytest.raises(PairingFailed, match="malformed"):
        device.receive_confirm(
            _confirm(keys, {**_registered(phone_key, recipient), "proof": proof})
        )
    assert device.phone_keys is None
