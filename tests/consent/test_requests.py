"""Requests: compact JWS Ed25519, strict parsing, field limits, joserfc interoperability."""

from __future__ import annotations

import base64
import json

import pytest
from joserfc import jws
from joserfc.jwk import OKPKey

from consent.errors import RequestInvalid
from consent.models import RequesterIdentity
from consent.requests import request_id_of, verify_request
from crypto.keys import KeyBundle
from crypto.signed import b64url
from tests.consent.kit import HOUR, IDENTITY, NOW, make_request


def _b64(obj: object) -> str:
    return b64url(json.dumps(obj).encode())


def _parts(token: str) -> tuple[dict, dict, str]:
    h, p, s = token.split(".")
    pad = lambda t: t + "=" * (-len(t) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(h))),
        json.loads(base64.urlsafe_b64decode(pad(p))),
        s,
    )


def test_round_trip(requester: KeyBundle) -> None:
    token = make_request(requester)
    request = verify_request(token, NOW)
    assert request.request_id == request_id_of(token)
    assert request.requester_key_id == requester.key_id
    assert request.identity == IDENTITY
    assert request.camera == "front"
    assert request.window_s == HOUR
    assert request.recipient == str(requester.recipient)
    header, _, _ = _parts(token)
    assert header == {"alg": "Ed25519", "kid": requester.key_id, "typ": "doorward-request+jws"}


def test_joserfc_verifies_our_request_and_we_verify_joserfcs(requester: KeyBundle) -> None:
    token = make_request(requester)
    public = OKPKey.import_key(requester.signing_key.public_key())
    obj = jws.deserialize_compact(token, public, algorithms=["Ed25519"])
    assert json.loads(obj.payload)["requester"]["name"] == IDENTITY.name
    _, claims, _ = _parts(token)
    private = OKPKey.import_key(requester.signing_key)
    theirs = jws.serialize_compact(
        {"alg": "Ed25519", "kid": requester.key_id, "typ": "doorward-request+jws"},
        json.dumps(claims).encode(),
        private,
        algorithms=["Ed25519"],
    )
    assert verify_request(theirs, NOW).reason == claims["reason"]


def _resign(requester: KeyBundle, header: dict, claims: dict) -> str:
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    return f"{signing_input}.{b64url(requester.signing_key.sign(signing_input.encode()))}"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"window_start_s": NOW - 14 * HOUR, "window_end_s": NOW - HOUR},
            "request refused: window must be at most 43200 s (12 h), got 46800 s",
        ),
        (
            {"window_start_s": NOW, "window_end_s": NOW + HOUR},
            f"request refused: window ends at {NOW + HOUR}, in the future (now {NOW})",
        ),
        (
            {"window_start_s": NOW - HOUR, "window_end_s": NOW - 2 * HOUR},
            f"request refused: window end must be after its start, got {NOW - HOUR}..{NOW - 2 * HOUR}",
        ),
        (
            {"issued_at_s": NOW - 7200, "expires_at_s": NOW - 1},
            f"request refused: it expired at {NOW - 1}, now is {NOW}",
        ),
        (
            {"issued_at_s": NOW + 3600, "expires_at_s": NOW + 7200},
            f"request refused: iat {NOW + 3600} is in the future (now {NOW}); "
            "check the requester's clock",
        ),
        (
            {"category": "immigration"},
            "request refused: category must be one of burglary, theft, package_theft, vandalism, "
            "assault, missing_person, missing_pet, traffic_collision, other, got 'immigration'",
        ),
        (
            {"legal_basis": "because"},
            "request refused: legal_basis must be one of voluntary, warrant, subpoena, "
            "emergency, got 'because'",
        ),
        ({"reason": ""}, "request refused: reason must be 1 to 2000 characters, got 0"),
        ({"nonce": "short"}, "request refused: nonce must be 16 to 128 characters, got 5"),
        (
            {"camera": "../etc"},
            "request refused: camera must be '*' or a camera name, got '../etc'",
        ),
    ],
)
def test_bad_fields_refused(requester: KeyBundle, overrides: dict, message: str) -> None:
    # Sign the raw claims so that the signer-side validation cannot stop the bad value.
    header, claims, _ = _parts(make_request(requester))
    mapping = {
        "window_start_s": ("window", "start"),
        "window_end_s": ("window", "end"),
        "issued_at_s": ("iat",),
        "expires_at_s": ("exp",),
    }
    for name, value in overrides.items():
        path = mapping.get(name, (name,))
        target = claims
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    with pytest.raises(RequestInvalid) as info:
        verify_request(_resign(requester, header, claims), NOW)
    assert str(info.value) == message


def test_bad_identity_kind_refused(requester: KeyBundle) -> None:
    header, claims, _ = _parts(make_request(requester))
    claims["requester"]["kind"] = "bounty_hunter"
    with pytest.raises(RequestInvalid, match="kind must be one of neighbour, local_agency"):
        verify_request(_resign(requester, header, claims), NOW)


def test_alg_none_refused(requester: KeyBundle) -> None:
    _, claims, _ = _parts(make_request(requester))
    token = f"{_b64({'alg': 'none', 'kid': requester.key_id, 'typ': 'doorward-request+jws'})}."
    token += f"{_b64(claims)}."
    with pytest.raises(RequestInvalid) as info:
        verify_request(token, NOW)
    assert str(info.value) == "request refused: token algorithm must be Ed25519, got 'none'"


def test_duplicate_keys_refused(requester: KeyBundle) -> None:
    header, claims, _ = _parts(make_request(requester))
    body = json.dumps(claims)[:-1] + ', "reason": "something else"}'
    signing_input = f"{_b64(header)}.{b64url(body.encode())}"
    token = f"{signing_input}.{b64url(requester.signing_key.sign(signing_input.encode()))}"
    with pytest.raises(RequestInvalid) as info:
        verify_request(token, NOW)
    assert str(info.value) == "request refused: JSON member 'reason' appears twice"


def test_oversized_refused(requester: KeyBundle) -> None:
    with pytest.raises(RequestInvalid) as info:
        verify_request("a" * 9000, NOW)
    assert str(info.value) == "request refused: token is 9000 bytes, more than the limit of 8192"


def test_signature_by_another_key_refused(requester: KeyBundle) -> None:
    other = KeyBundle.generate("x25519")
    header, claims, _ = _parts(make_request(requester))
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    token = f"{signing_input}.{b64url(other.signing_key.sign(signing_input.encode()))}"
    with pytest.raises(RequestInvalid) as info:
        verify_request(token, NOW)
    assert str(info.value) == (
        "request refused: token signature does not verify: it was altered or forged"
    )


def test_unknown_member_refused(requester: KeyBundle) -> None:
    header, claims, _ = _parts(make_request(requester))
    claims["owner_address"] = "please"
    with pytest.raises(RequestInvalid) as info:
        verify_request(_resign(requester, header, claims), NOW)
    assert str(info.value) == (
        "request refused: request members are wrong (missing: -; unknown: owner_address)"
    )


def test_bool_is_not_a_time(requester: KeyBundle) -> None:
    header, claims, _ = _parts(make_request(requester))
    claims["window"]["start"] = True
    with pytest.raises(RequestInvalid) as info:
        verify_request(_resign(requester, header, claims), NOW)
    assert str(info.value) == "request refused: window start must be an integer, got bool"


def test_recipient_must_be_age(requester: KeyBundle) -> None:
    header, claims, _ = _parts(make_request(requester))
    claims["requester"]["recipient"] = "ssh-ed25519 AAAA"
    with pytest.raises(RequestInvalid) as info:
        verify_request(_resign(requester, header, claims), NOW)
    assert str(info.value) == (
        "request refused: recipient 'ssh-ed25519 AAAA' is not an age recipient"
    )


def test_identity_validation() -> None:
    with pytest.raises(ValueError, match="name must be 1 to 200 characters, got 0"):
        RequesterIdentity("", "", "neighbour", "", "")
