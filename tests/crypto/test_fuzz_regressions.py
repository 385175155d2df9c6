"""Inputs the fuzzers (tests/fuzz, fuzz/run.py) found crashing crypto parsers; each is refused now
with the parser's documented error."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto import age
from crypto.errors import PairingFailed, SignatureError
from crypto.keys import device_id
from crypto.pairing import MAX_MESSAGE_BYTES, DevicePairing, PairingState, PhonePairing
from crypto.setup_code import PairingURI, SetupCode, SetupCodeError
from crypto.signed import b64url, sign_document, verify_document

KEY = Ed25519PrivateKey.generate()
CODE = SetupCode("48151623")
FP = b64url(bytes(range(32)))


def _forged(body: object) -> dict[str, object]:
    """A signed document whose body was swapped after signing (the key field still matches)."""
    doc = sign_document({"a": 1}, KEY)
    doc["body"] = body
    return doc


def test_signed_document_rejects_a_float_in_its_body() -> None:
    with pytest.raises(SignatureError, match="body is not canonical JSON"):
        verify_document(_forged({"a": 1.5}), KEY.public_key())


def test_signed_document_rejects_a_body_nested_too_deeply() -> None:
    body: dict[str, object] = {"a": 1}
    for _ in range(40):
        body = {"a": body}
    with pytest.raises(SignatureError, match="body is not canonical JSON"):
        verify_document(_forged(body), KEY.public_key())


def _device() -> DevicePairing:
    return DevicePairing(CODE, device_signing_key=KEY.public_key(), tls_fingerprint=FP)


def _phone() -> PhonePairing:
    return PhonePairing(
        CODE,
        phone_signing_key=Ed25519PrivateKey.generate(),
        recipient=str(age.X25519Identity.generate().recipient()),
        name="phone",
        device_id=device_id(KEY.public_key()),
    )


# Under the 16 KiB message cap, but deeper than Python's JSON decoder can recurse.
DEEP = b"[" * (MAX_MESSAGE_BYTES - 1)


def test_pairing_rejects_deeply_nested_json_from_a_stranger() -> None:
    device = _device()
    with pytest.raises(PairingFailed, match="pairing message was malformed"):
        device.receive_pake(DEEP)
    assert device.state is PairingState.FAILED


def test_pairing_phone_rejects_deeply_nested_json_from_the_device() -> None:
    phone = _phone()
    phone.start()
    with pytest.raises(PairingFailed, match="pairing message was malformed"):
        phone.receive_pake(b'{"a":' * 2500 + b"1" + b"}" * 2500)
    assert phone.state is PairingState.FAILED


@pytest.mark.parametrize("uri", ["doorward://pair]?v=1", "doorward://[pair?v=1"], ids=repr)
def test_pairing_uri_rejects_an_unbalanced_bracket(uri: str) -> None:
    with pytest.raises(SetupCodeError, match=r"must start with doorward://pair\?"):
        PairingURI.parse(uri)
