"""The pairing state machines: SPAKE2 over the setup code, key confirmation, key exchange."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import age
from crypto.errors import PairingFailed
from crypto.keys import device_id
from crypto.pairing import (
    DeviceKeys,
    DevicePairing,
    FailureReason,
    PairingState,
    PhoneKeys,
    PhonePairing,
    _Keys,
)
from crypto.setup_code import SetupCode
from crypto.signed import b64url, b64url_decode, canonical_json

CODE = SetupCode("48151623")
WRONG = SetupCode("48151624")
RECIPIENT = str(age.X25519Identity.generate().recipient())
FP = b64url(bytes(range(32)))

S, P, C, OK, F = (
    PairingState.START,
    PairingState.SENT_PAKE,
    PairingState.SENT_CONFIRM,
    PairingState.PAIRED,
    PairingState.FAILED,
)

WRONG_CODE = (
    "pairing failed: the setup code was typed wrong, or someone tried to guess it; "
    "check the code on the doorbell and try again"
)
TAMPERED = "pairing failed: a pairing message was altered on the way; start pairing again"
ALREADY = "pairing failed: this attempt has already failed; start again"


def malformed(detail: str) -> str:
    return f"pairing failed: a pairing message was malformed ({detail}); start pairing again"


def out_of_order(detail: str) -> str:
    return f"pairing failed: a pairing message arrived out of order ({detail}); start pairing again"


@dataclass
class Pair:
    phone: PhonePairing
    device: DevicePairing
    phone_key: Ed25519PrivateKey
    device_key: Ed25519PrivateKey


def seeded(seed: int) -> object:
    rng = random.Random(seed)
    return lambda n: rng.randbytes(n)


def make_pair(
    phone_code: SetupCode = CODE,
    device_code: SetupCode = CODE,
    *,
    expected_fingerprint: str | None = FP,
    seed: int | None = None,
    device_key: Ed25519PrivateKey | None = None,
) -> Pair:
    phone_key = Ed25519PrivateKey.from_private_bytes(bytes(32)) if seed else None
    phone_key = phone_key or Ed25519PrivateKey.generate()
    if seed and device_key is None:
        device_key = Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32)
    device_key = device_key or Ed25519PrivateKey.generate()
    phone = PhonePairing(
        phone_code,
        phone_signing_key=phone_key,
        recipient=RECIPIENT,
        name="Ann's phone",
        device_id=device_id(device_key.public_key()),
        expected_fingerprint=expected_fingerprint,
        entropy=seeded(seed) if seed else None,  # type: ignore[arg-type]
    )
    device = DevicePairing(
        device_code,
        device_signing_key=device_key.public_key(),
        tls_fingerprint=FP,
        entropy=seeded(seed + 1) if seed else None,  # type: ignore[arg-type]
    )
    return Pair(phone, device, phone_key, device_key)


def fail_with(call: object, message: str) -> None:
    with pytest.raises(PairingFailed) as info:
        call()  # type: ignore[operator]
    assert str(info.value) == message


def edit(message: bytes, **changes: object) -> bytes:
    body = json.loads(message)
    body.update(changes)
    return canonical_json(body)


def flip(b64: str, index: int = 5) -> str:
    raw = bytearray(b64url_decode(b64))
    raw[index] ^= 0x01
    return b64url(bytes(raw))


def test_right_code_pairs_and_both_sides_agree(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="crypto.pairing")
    pair = make_pair()
    pake1 = pair.phone.start()
    pake2 = pair.device.receive_pake(pake1)
    confirm = pair.phone.receive_pake(pake2)
    phone_keys, keys = pair.device.receive_confirm(confirm)
    device_keys = pair.phone.receive_keys(keys)

    assert phone_keys == PhoneKeys(pair.phone_key.public_key(), RECIPIENT, "Ann's phone")
    assert (
        phone_keys.signing_key.public_bytes_raw() == pair.phone_key.public_key().public_bytes_raw()
    )
    assert device_keys == DeviceKeys(pair.device_key.public_key(), FP)
    assert device_keys.device_id == device_id(pair.device_key.public_key())
    assert pair.device.phone_keys == phone_keys
    assert pair.phone.device_keys == device_keys
    assert pair.phone.history == [S, P, C, OK]
    assert pair.device.history == [S, P, OK]
    assert pair.phone.failure is None
    assert pair.device.failure is None
    assert [r.getMessage() for r in caplog.records] == [
        "pairing.state side=phone old=start new=sent_pake",
        "pairing.state side=device old=start new=sent_pake",
        "pairing.state side=phone old=sent_pake new=sent_confirm",
        "pairing.state side=device old=sent_pake new=paired",
        "pairing.state side=phone old=sent_confirm new=paired",
    ]
    assert "48151623" not in caplog.text
    assert "4815" not in repr(pair.phone.__dict__) + repr(phone_keys) + repr(device_keys)


def test_messages_have_exactly_the_documented_fields() -> None:
    pair = make_pair()
    pake1 = json.loads(pair.phone.start())
    assert sorted(pake1) == ["device", "pake", "phone", "type", "v"]
    assert pake1["type"] == "pake1"
    assert pake1["device"] == device_id(pair.device_key.public_key())
    assert len(b64url_decode(pake1["pake"])) == 33
    pake2 = json.loads(pair.device.receive_pake(canonical_json(pake1)))
    assert sorted(pake2) == ["confirm", "pake", "type", "v"]
    confirm = json.loads(pair.phone.receive_pake(canonical_json(pake2)))
    assert sorted(confirm) == ["box", "confirm", "type", "v"]
    assert RECIPIENT not in json.dumps(confirm)  # the phone's keys travel encrypted
    _, keys = pair.device.receive_confirm(canonical_json(confirm))
    assert sorted(json.loads(keys)) == ["box", "type", "v"]
    assert FP not in keys.decode()


def test_same_entropy_gives_identical_messages() -> None:
    transcripts = []
    for _ in range(2):
        pair = make_pair(seed=7)
        pake1 = pair.phone.start()
        pake2 = pair.device.receive_pake(pake1)
        confirm = pair.phone.receive_pake(pake2)
        transcripts.append((pake1, pake2, confirm))
    assert transcripts[0] == transcripts[1]
    other = make_pair(seed=8)
    assert other.phone.start() != transcripts[0][0]


def test_wrong_code_fails_on_the_phone_at_confirmation() -> None:
    pair = make_pair(phone_code=WRONG)
    pake2 = pair.device.receive_pake(pair.phone.start())
    fail_with(lambda: pair.phone.receive_pake(pake2), WRONG_CODE)
    assert pair.phone.failure is FailureReason.WRONG_CODE
    assert pair.phone.history == [S, P, F]


def forge_confirm(phone: PhonePairing, pake2: bytes) -> bytes:
    """What an attacker's phone sends when it ignores the device's MAC and answers anyway."""
    fields = json.loads(pake2)
    inbound = b64url_decode(fields["pake"])
    secret = phone._pake.finish(inbound)
    keys = _Keys.derive(secret, phone._ids, phone._outbound, inbound)
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    box = ChaCha20Poly1305(keys.phone_to_device).encrypt(bytes(12), b"{}", b"confirm")
    return canonical_json(
        {"v": 2, "type": "confirm", "confirm": b64url(keys.mac("phone")), "box": b64url(box)}
    )


def test_wrong_code_fails_on_the_device_at_confirmation() -> None:
    pair = make_pair(phone_code=WRONG)
    pake2 = pair.device.receive_pake(pair.phone.start())
    fail_with(lambda: pair.device.receive_confirm(forge_confirm(pair.phone, pake2)), WRONG_CODE)
    assert pair.device.failure is FailureReason.WRONG_CODE
    assert pair.device.history == [S, P, F]
    assert pair.device.phone_keys is None


def test_right_code_forged_confirm_reaches_the_box_check() -> None:
    # Sanity check of forge_confirm: with the right code the MAC passes and the empty box
    # is refused for its content, not for its MAC.
    pair = make_pair()
    pake2 = pair.device.receive_pake(pair.phone.start())
    fail_with(
        lambda: pair.device.receive_confirm(forge_confirm(pair.phone, pake2)),
        malformed("confirm must carry signing_key, recipient, name and proof"),
    )


def test_substituted_pake1_element_fails_confirmation() -> None:
    # A man in the middle swaps in its own SPAKE2 element (it does not know the code).
    pair = make_pair()
    pake1 = pair.phone.start()
    attacker = make_pair(phone_code=WRONG, device_key=pair.device_key).phone
    element = json.loads(attacker.start())["pake"]
    pake2 = pair.device.receive_pake(edit(pake1, pake=element))
    fail_with(lambda: pair.phone.receive_pake(pake2), WRONG_CODE)


def test_bit_flips_in_the_pake1_element_never_pair() -> None:
    pair = make_pair(seed=7)
    pake1 = pair.phone.start()
    element = json.loads(pake1)["pake"]
    replies, errors = [], []
    for index in range(1, 33):  # byte 0 is spake2's side marker
        device = DevicePairing(
            CODE, device_signing_key=pair.device_key.public_key(), tls_fingerprint=FP
        )
        try:
            replies.append(device.receive_pake(edit(pake1, pake=flip(element, index))))
        except PairingFailed as exc:
            errors.append(str(exc))  # the changed bytes are not a point of the group
    assert set(errors) == {malformed("not a SPAKE2 message")}
    for reply in replies:
        phone = make_pair(seed=7).phone
        phone.start()
        fail_with(lambda reply=reply, phone=phone: phone.receive_pake(reply), WRONG_CODE)


def test_tampered_phone_id_fails_confirmation() -> None:
    pair = make_pair()
    pake1 = pair.phone.start()
    other_id = b64url(bytes(32))
    pake2 = pair.device.receive_pake(edit(pake1, phone=other_id))
    fail_with(lambda: pair.phone.receive_pake(pake2), WRONG_CODE)


def test_pake1_for_another_device_is_refused() -> None:
    pair = make_pair()
    fail_with(
        lambda: pair.device.receive_pake(edit(pair.phone.start(), device="a" * 16)),
        malformed("pake1 is addressed to another device"),
    )
    assert pair.device.failure is FailureReason.MALFORMED


def test_tampered_device_mac_fails_on_the_phone() -> None:
    pair = make_pair()
    pake2 = pair.device.receive_pake(pair.phone.start())
    bad = edit(pake2, confirm=flip(json.loads(pake2)["confirm"]))
    fail_with(lambda: pair.phone.receive_pake(bad), WRONG_CODE)


def test_tampered_phone_box_fails_on_the_device() -> None:
    pair = make_pair()
    confirm = pair.phone.receive_pake(pair.device.receive_pake(pair.phone.start()))
    bad = edit(confirm, box=flip(json.loads(confirm)["box"], 10))
    fail_with(lambda: pair.device.receive_confirm(bad), TAMPERED)
    assert pair.device.failure is FailureReason.TAMPERED
    assert pair.device.phone_keys is None


def test_tampered_device_box_fails_on_the_phone() -> None:
    pair = make_pair()
    confirm = pair.phone.receive_pake(pair.device.receive_pake(pair.phone.start()))
    _, keys = pair.device.receive_confirm(confirm)
    bad = edit(keys, box=flip(json.loads(keys)["box"], 3))
    fail_with(lambda: pair.phone.receive_keys(bad), TAMPERED)
    assert pair.phone.history == [S, P, C, F]
    assert pair.phone.device_keys is None


def test_phone_refuses_a_device_whose_tls_key_differs_from_the_qr_code() -> None:
    pair = make_pair(expected_fingerprint=b64url(bytes(32)))
    confirm = pair.phone.receive_pake(pair.device.receive_pake(pair.phone.start()))
    _, keys = pair.device.receive_confirm(confirm)
    fail_with(
        lambda: pair.phone.receive_keys(keys),
        "pairing failed: the doorbell's keys do not match the TLS fingerprint in its QR code; "
        "this may not be your doorbell: check that you are on your home network "
        "and scan the code again",
    )
    assert pair.phone.failure is FailureReason.KEY_MISMATCH


def test_phone_without_a_known_fingerprint_learns_it() -> None:
    pair = make_pair(expected_fingerprint=None)
    confirm = pair.phone.receive_pake(pair.device.receive_pake(pair.phone.start()))
    _, keys = pair.device.receive_confirm(confirm)
    assert pair.phone.receive_keys(keys).tls_fingerprint == FP


def test_replayed_pake1_is_refused_and_kills_the_attempt() -> None:
    pair = make_pair()
    pake1 = pair.phone.start()
    pair.device.receive_pake(pake1)
    fail_with(lambda: pair.device.receive_pake(pake1), out_of_order("got pake1 in state sent_pake"))
    assert pair.device.history == [S, P, F]
    fail_with(lambda: pair.device.receive_confirm(b"{}"), ALREADY)


def test_confirm_replayed_into_a_new_session_fails_confirmation() -> None:
    device_key = Ed25519PrivateKey.generate()
    first = make_pair(device_key=device_key)
    confirm = first.phone.receive_pake(first.device.receive_pake(first.phone.start()))
    second = make_pair(device_key=device_key)
    second.device.receive_pake(second.phone.start())
    fail_with(lambda: second.device.receive_confirm(confirm), WRONG_CODE)


def test_pake2_from_another_session_fails_confirmation() -> None:
    device_key = Ed25519PrivateKey.generate()
    first = make_pair(device_key=device_key)
    second = make_pair(device_key=device_key)
    pake2_first = first.device.receive_pake(first.phone.start())
    second.phone.start()
    fail_with(lambda: second.phone.receive_pake(pake2_first), WRONG_CODE)


def test_out_of_order_calls_fail() -> None:
    pair = make_pair()
    fail_with(
        lambda: pair.device.receive_confirm(b"{}"), out_of_order("got confirm in state start")
    )
    assert pair.device.failure is FailureReason.OUT_OF_ORDER
    phone = make_pair().phone
    fail_with(lambda: phone.receive_keys(b"{}"), out_of_order("got keys in state start"))
    phone2 = make_pair().phone
    phone2.start()
    fail_with(lambda: phone2.start(), out_of_order("got start in state sent_pake"))


def test_message_of_the_wrong_type_is_out_of_order() -> None:
    pair = make_pair()
    confirm = pair.phone.receive_pake(pair.device.receive_pake(pair.phone.start()))
    fresh = make_pair()
    fresh.phone.start()
    fail_with(
        lambda: fresh.phone.receive_pake(confirm), out_of_order("expected pake2, got confirm")
    )


@pytest.mark.parametrize(
    ("mutate", "detail"),
    [
        (lambda m: b"not json", "message is not JSON"),
        (lambda m: b"\xff\xfe", "message is not JSON"),
        (lambda m: b"[1]", "message must be a JSON object"),
        (lambda m: b" " * 16385, "message must be at most 16384 bytes"),
        (
            lambda m: edit(m, extra=1),
            "pake1 must have fields ['device', 'pake', 'phone', 'type', 'v']",
        ),
        (lambda m: edit(m, v=1), "protocol version must be 2"),
        (lambda m: edit(m, pake="AAAA"), "pake must be 33 bytes"),
        (lambda m: edit(m, pake="AA=="), "pake must be base64url"),
        (lambda m: edit(m, pake=7), "pake must be base64url"),
        (lambda m: edit(m, phone=""), "phone must be a key id"),
        (lambda m: edit(m, phone=["x"]), "phone must be a key id"),
    ],
)
def test_malformed_pake1_is_refused(mutate: object, detail: str) -> None:
    pair = make_pair()
    bad = mutate(pair.phone.start())  # type: ignore[operator]
    fail_with(lambda: pair.device.receive_pake(bad), malformed(detail))
    assert pair.device.state is F
    assert pair.device.failure is FailureReason.MALFORMED


def test_missing_field_is_reported() -> None:
    pair = make_pair()
    body = json.loads(pair.phone.start())
    del body["pake"]
    fail_with(
        lambda: pair.device.receive_pake(canonical_json(body)),
        malformed("pake1 must have fields ['device', 'pake', 'phone', 'type', 'v']"),
    )


def test_device_refuses_keys_that_do_not_match_the_claimed_phone_id() -> None:
    pair = make_pair()
    pake1 = pair.phone.start()
    # A phone that claims someone else's key id, but knows the code.
    liar = PhonePairing(
        CODE,
        phone_signing_key=Ed25519PrivateKey.generate(),
        recipient=RECIPIENT,
        name="liar",
        device_id=device_id(pair.device_key.public_key()),
    )
    liar._ids = pair.phone._ids  # bind the SPAKE2 run to the victim's id
    liar._pake = pair.phone._pake
    liar._outbound = b64url_decode(json.loads(pake1)["pake"])
    liar.state = P
    confirm = liar.receive_pake(pair.device.receive_pake(pake1))
    fail_with(
        lambda: pair.device.receive_confirm(confirm),
        malformed("the phone's key does not match its key id"),
    )


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_only_ever_raises_pairing_failed(data: bytes) -> None:
    pair = make_pair()
    with pytest.raises(PairingFailed):
        pair.device.receive_pake(data)
    pair.phone.start()
    with pytest.raises(PairingFailed):
        pair.phone.receive_pake(data)
    assert pair.device.state is F
    assert pair.phone.state is F


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["v", "type", "pake", "phone", "device", "x"]),
        st.one_of(st.integers(), st.text(max_size=50), st.none()),
        max_size=6,
    )
)
def test_json_garbage_only_ever_raises_pairing_failed(body: dict[str, object]) -> None:
    pair = make_pair()
    with pytest.raises(PairingFailed):
        pair.device.receive_pake(json.dumps(body).encode())


def test_hybrid_recipients_pair_too() -> None:
    hybrid = str(age.HybridIdentity.generate().recipient())
    pair = make_pair()
    pair.phone._keys = PhoneKeys(pair.phone_key.public_key(), hybrid, "Ann's phone")
    confirm = pair.phone.receive_pake(pair.device.receive_pake(pair.phone.start()))
    phone_keys, _ = pair.device.receive_confirm(confirm)
    assert phone_keys.recipient == hybrid
    assert len(confirm) < 16 * 1024


def test_device_refuses_a_recipient_that_is_not_age() -> None:
    pair = make_pair()
    # Well-formed on the surface (age1 + alphanumerics) but not valid bech32.
    pair.phone._keys = PhoneKeys(pair.phone_key.public_key(), "age1" + "b" * 58, "Ann's phone")
    confirm = pair.phone.receive_pake(pair.device.receive_pake(pair.phone.start()))
    fail_with(
        lambda: pair.device.receive_confirm(confirm), malformed("recipient is not an age recipient")
    )


def test_phone_refuses_a_device_whose_key_is_not_the_device_id() -> None:
    # A device that knows the code but hands over another signing key.
    pair = make_pair()
    confirm = pair.phone.receive_pake(pair.device.receive_pake(pair.phone.start()))
    pair.device._keys = DeviceKeys(Ed25519PrivateKey.generate().public_key(), FP)
    _, keys = pair.device.receive_confirm(confirm)
    expected = device_id(pair.device_key.public_key())
    fail_with(
        lambda: pair.phone.receive_keys(keys),
        f"pairing failed: the doorbell's keys do not match the device id {expected}; "
        "this may not be your doorbell: check that you are on your home network "
        "and scan the code again",
    )


RELAY_CONFIG = bytes([1, 0, 0x20]) + bytes(32) + bytes([0, 4, 0, 1, 0, 1])
RELAY_URL = "mqtts://relay.example.net:8884"


def test_the_device_hands_its_relay_key_and_url_inside_the_confirmed_box() -> None:
    pair = make_pair()
    pair.device._keys = DeviceKeys(pair.device_key.public_key(), FP, RELAY_CONFIG, RELAY_URL)
    confirm = pair.phone.receive_pake(pair.device.receive_pake(pair.phone.start()))
    _, keys = pair.device.receive_confirm(confirm)
    # Nothing of them is readable outside the box.
    assert b64url(RELAY_CONFIG).encode() not in keys
    assert b"relay" not in keys
    device = pair.phone.receive_keys(keys)
    assert device.relay_key_config == RELAY_CONFIG
    assert device.relay_url == RELAY_URL
    assert device == DeviceKeys(pair.device_key.public_key(), FP, RELAY_CONFIG, RELAY_URL)


def _keys_box(pair: Pair, body: dict[str, object]) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    confirm = pair.phone.receive_pake(pair.device.receive_pake(pair.phone.start()))
    secret = pair.device._box_keys
    assert secret is not None
    pair.device.receive_confirm(confirm)
    box = ChaCha20Poly1305(secret.device_to_phone).encrypt(bytes(12), canonical_json(body), b"keys")
    return canonical_json({"v": 2, "type": "keys", "box": b64url(box)})


def test_phone_refuses_relay_fields_it_cannot_use() -> None:
    base = {"signing_key": "", "tls_fingerprint": FP}
    pair = make_pair()
    base["signing_key"] = b64url(pair.device_key.public_key().public_bytes_raw())
    message = _keys_box(pair, {**base, "relay_url": "http://relay.example.net"})
    fail_with(
        lambda: pair.phone.receive_keys(message),
        malformed("relay url must be mqtts://HOST:PORT of at most 256 characters"),
    )
    pair = make_pair()
    base["signing_key"] = b64url(pair.device_key.public_key().public_bytes_raw())
    message = _keys_box(pair, {**base, "relay_key_config": b64url(bytes(3000))})
    fail_with(
        lambda: pair.phone.receive_keys(message),
        malformed("relay key configuration must be 1-2048 bytes"),
    )
    pair = make_pair()
    base["signing_key"] = b64url(pair.device_key.public_key().public_bytes_raw())
    message = _keys_box(pair, {**base, "relay_password": "x"})
    fail_with(
        lambda: pair.phone.receive_keys(message),
        malformed(
            "keys must have fields ['signing_key', 'tls_fingerprint'], and may have "
            "['relay_key_config', 'relay_url']"
        ),
    )
