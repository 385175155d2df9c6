"""Fuzz pairing: the four SPAKE2 messages on both sides, the device's pairing desk (the first
thing an unauthenticated stranger reaches), setup codes and pairing URIs.

Both machines draw their randomness from a fixed seed, so the valid transcript is the same on
every run and a mutant of it can reach as deep as the state the machine is in.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given

from crypto import age
from crypto.errors import PairingFailed
from crypto.keys import device_id
from crypto.pairing import DeviceKeys, DevicePairing, PairingState, PhoneKeys, PhonePairing
from crypto.setup_code import PairingURI, SetupCode, SetupCodeError
from crypto.signed import b64url
from hub.server.config import ServeConfig
from hub.server.events import EventBus
from hub.server.pairing import PairingDesk
from hub.server.routes._params import parse_json_object
from hub.server.state import Device
from hub.wire.errors import BadRequest, HubError
from tests.fuzz.kit import (
    bytes_target,
    fuzz_settings,
    parse_or_refuse,
    perturbed_json,
    text_target,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.timeout(120)]

CODE = SetupCode("48151623")
PHONE_KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
DEVICE_KEY = Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32)
RECIPIENT = str(age.X25519Identity.generate().recipient())
FP = b64url(bytes(range(32)))


def _seeded(seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)
    return rng.randbytes


def _phone() -> PhonePairing:
    return PhonePairing(
        CODE,
        phone_signing_key=PHONE_KEY,
        recipient=RECIPIENT,
        name="Ann's phone",
        device_id=device_id(DEVICE_KEY.public_key()),
        expected_fingerprint=FP,
        entropy=_seeded(7),
    )


def _device() -> DevicePairing:
    return DevicePairing(
        CODE, device_signing_key=DEVICE_KEY.public_key(), tls_fingerprint=FP, entropy=_seeded(8)
    )


def _transcript() -> tuple[bytes, bytes, bytes, bytes]:
    phone, device = _phone(), _device()
    pake1 = phone.start()
    pake2 = device.receive_pake(pake1)
    confirm = phone.receive_pake(pake2)
    _, keys = device.receive_confirm(confirm)
    phone.receive_keys(keys)
    return pake1, pake2, confirm, keys


PAKE1, PAKE2, CONFIRM, KEYS = _transcript()
MESSAGES = [PAKE1, PAKE2, CONFIRM, KEYS]


def _ends_well(machine: Any, result: object, expected: type) -> None:
    """A machine either moved on (and returned what it should) or failed for good."""
    if isinstance(result, PairingFailed):
        assert machine.state is PairingState.FAILED
    else:
        assert isinstance(result, expected)


@bytes_target(MESSAGES, share=2)
def test_device_receives_pake1(data: bytes) -> None:
    device = _device()
    result = parse_or_refuse(
        lambda: device.receive_pake(data), (PairingFailed,), input_size=len(data)
    )
    _ends_well(device, result, bytes)


@bytes_target(MESSAGES, share=2)
def test_phone_receives_pake2(data: bytes) -> None:
    phone = _phone()
    phone.start()
    result = parse_or_refuse(
        lambda: phone.receive_pake(data), (PairingFailed,), input_size=len(data)
    )
    _ends_well(phone, result, bytes)


@bytes_target(MESSAGES, share=2)
def test_device_receives_confirm(data: bytes) -> None:
    device = _device()
    device.receive_pake(PAKE1)
    result = parse_or_refuse(
        lambda: device.receive_confirm(data), (PairingFailed,), input_size=len(data)
    )
    _ends_well(device, result, tuple)
    if isinstance(result, tuple):
        assert isinstance(result[0], PhoneKeys)


@bytes_target(MESSAGES, share=2)
def test_phone_receives_keys(data: bytes) -> None:
    phone = _phone()
    phone.receive_pake(_device().receive_pake(phone.start()))
    result = parse_or_refuse(
        lambda: phone.receive_keys(data), (PairingFailed,), input_size=len(data)
    )
    _ends_well(phone, result, DeviceKeys)


@fuzz_settings(share=2)
@given(perturbed_json(json.loads(PAKE1)))
def test_device_receives_any_json_pake1(message: Any) -> None:
    data = json.dumps(message).encode()
    device = _device()
    result = parse_or_refuse(lambda: device.receive_pake(data), (PairingFailed,))
    _ends_well(device, result, bytes)


@fuzz_settings(share=2)
@given(perturbed_json(json.loads(CONFIRM)))
def test_device_receives_any_json_confirm(message: Any) -> None:
    data = json.dumps(message).encode()
    device = _device()
    device.receive_pake(PAKE1)
    result = parse_or_refuse(lambda: device.receive_confirm(data), (PairingFailed,))
    _ends_well(device, result, tuple)


# -- the device's pairing desk (POST /pair/start) -----------------------------------------------


@cache
def _desk() -> PairingDesk:
    # The folder lives as long as this module (it is removed when the interpreter exits).
    folder = tempfile.TemporaryDirectory(prefix="doorward-fuzz-")
    _FOLDERS.append(folder)
    device = Device.open(Path(folder.name))
    deps = device.deps({}, ServeConfig(data_dir=Path(folder.name)))
    return PairingDesk(deps, EventBus(clock=time.time))


_FOLDERS: list[tempfile.TemporaryDirectory[str]] = []


@bytes_target([PAKE1, b'{"phone": "abc"}'], share=2)
def test_pairing_desk_start(data: bytes) -> None:
    desk = _desk()
    desk.close()
    desk.unlock()
    parse_or_refuse(
        lambda: desk.start(data, time.time()), (PairingFailed, HubError), input_size=len(data)
    )


# -- JSON request bodies (hub.server.routes._params) --------------------------------------------


@bytes_target([b'{"token": "abc", "sdp": "v=0"}', b'{"document": "{}"}', b'{"k": [1]}'], share=4)
def test_json_request_body(data: bytes) -> None:
    result = parse_or_refuse(lambda: parse_json_object(data), (BadRequest,), input_size=len(data))
    if isinstance(result, dict):
        assert result == json.loads(data)


# -- setup codes and pairing URIs ---------------------------------------------------------------

URI = PairingURI("abcdefghijklmnop", CODE, FP, host="192.168.1.20", port=8443).to_uri()
URI_V6 = PairingURI("abcdefghijklmnop", CODE, FP, host="fe80::1", port=1).to_uri()


@text_target(["4815-1623", "48151623", " 4815 1623 "], share=4)
def test_setup_code(text: str) -> None:
    result = parse_or_refuse(lambda: SetupCode.parse(text), (SetupCodeError,))
    if isinstance(result, SetupCode):
        assert SetupCode.parse(result.display()) == result
        assert result.digits() not in repr(result)
    else:
        assert len(text.strip()) < 4 or text.strip() not in str(result)


@text_target([URI, URI_V6, PairingURI("abcdefghijklmnop", CODE, FP).to_uri()], share=4)
def test_pairing_uri(text: str) -> None:
    result = parse_or_refuse(lambda: PairingURI.parse(text), (SetupCodeError,))
    if isinstance(result, PairingURI):
        assert PairingURI.parse(result.to_uri()) == result
    else:
        # The setup code is a secret: an error never repeats the c= field.
        fields = [part.partition("=") for part in text.partition("?")[2].split("&")]
        codes = [value for key, _, value in fields if key == "c" and len(value) >= 4]
        assert not any(code in str(result) for code in codes)
