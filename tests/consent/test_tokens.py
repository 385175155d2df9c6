"""Owner tokens: claim checks with exact messages, and interoperability with joserfc."""

from __future__ import annotations

import json

import pytest
from joserfc import jws
from joserfc.jwk import OKPKey

from consent import jws as our_jws
from consent.errors import TokenInvalid
from consent.models import PairedOwner
from consent.tokens import (
    CONSENT_TYP,
    DECLINE_TYP,
    consent_claims,
    sign_consent,
    verify_owner_token,
)
from crypto.keys import KeyBundle
from tests.consent.kit import NOW

DEVICE = "devicetest000001"


def _claims(owner: KeyBundle, **changes: object) -> dict:
    claims = {
        "iss": owner.key_id,
        "aud": DEVICE,
        "jti": "rel-1",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 3600,
        "sub": "requester-kid",
        "request_id": "req-1",
        "manifest_sha256": "ab" * 32,
        "max_downloads": 1,
        "disclosures": {},
    }
    claims.update(changes)
    return claims


def _verify(owner: KeyBundle, token: str, typ: str = CONSENT_TYP):
    owners = [PairedOwner.from_public(owner.signing_key.public_key())]
    return verify_owner_token(token, typ=typ, owners=owners, device_id=DEVICE, now=NOW)


def _sign(owner: KeyBundle, claims: dict, typ: str = CONSENT_TYP) -> str:
    return our_jws.sign_compact(claims, typ=typ, kid=owner.key_id, sign=owner.signing_key.sign)


def test_round_trip_and_joserfc_interop(owner: KeyBundle) -> None:
    token = sign_consent(
        owner.signing_key,
        device_id=DEVICE,
        requester_key_id="requester-kid",
        request_id="req-1",
        manifest=b"{}",
        token_id="rel-1",
        issued_at_s=NOW,
        expires_at_s=NOW + 3600,
    )
    claims = consent_claims(_verify(owner, token))
    assert (claims.issuer, claims.subject, claims.max_downloads, claims.disclosures) == (
        owner.key_id,
        "requester-kid",
        1,
        {},
    )
    public = OKPKey.import_key(owner.signing_key.public_key())
    obj = jws.deserialize_compact(token, public, algorithms=["Ed25519"])
    assert json.loads(obj.payload)["aud"] == DEVICE
    private = OKPKey.import_key(owner.signing_key)
    theirs = jws.serialize_compact(
        {"alg": "Ed25519", "kid": owner.key_id, "typ": CONSENT_TYP},
        json.dumps(_claims(owner)).encode(),
        private,
        algorithms=["Ed25519"],
    )
    assert _verify(owner, theirs).token_id == "rel-1"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_downloads": 0}, "token max_downloads must be 1 to 100, got 0"),
        ({"max_downloads": True}, "token max_downloads must be 1 to 100, got True"),
        ({"exp": NOW + 91 * 86400}, "token lifetime must be at most 7776000 s"),
        ({"nbf": NOW - 1}, "token times must satisfy iat <= nbf < exp"),
        ({"iat": "yesterday"}, "token iat must be an integer time, got 'yesterday'"),
        ({"manifest_sha256": "AB" * 32}, "token manifest_sha256 must be 64 lowercase hex digits"),
        (
            {"disclosures": {"ssn": "123"}},
            "token disclosures may only hold name, address, email, phone, note",
        ),
        ({"jti": "../../x y"}, "token jti must be an id of 1 to 128 safe characters"),
        ({"extra": 1}, "token claims are wrong (missing: -; unknown: extra)"),
    ],
)
def test_bad_claims(owner: KeyBundle, changes: dict, message: str) -> None:
    with pytest.raises(TokenInvalid) as info:
        _verify(owner, _sign(owner, _claims(owner, **changes)))
    assert str(info.value) == message


def test_iss_must_be_the_signer(owner: KeyBundle) -> None:
    with pytest.raises(TokenInvalid) as info:
        _verify(owner, _sign(owner, _claims(owner, iss="someone-else")))
    assert str(info.value) == "token iss does not match the signing key id"


def test_type_is_pinned(owner: KeyBundle) -> None:
    # A consent token is not accepted where a decline is expected, and vice versa.
    token = _sign(owner, _claims(owner))
    with pytest.raises(TokenInvalid) as info:
        _verify(owner, token, typ=DECLINE_TYP)
    assert str(info.value) == (
        "token type must be 'doorward-decline+jws', got 'doorward-consent+jws'"
    )


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("a.b", "token must have 3 dot-separated parts, got 2"),
        ("a=.b.c", "token header is not unpadded base64url"),
        ("e30.e30.AA", "token header has no alg"),
        ("éé.e30.AA", "token must be ASCII"),
    ],
)
def test_malformed(owner: KeyBundle, token: str, message: str) -> None:
    with pytest.raises(TokenInvalid) as info:
        _verify(owner, token) if token.isascii() else _verify(owner, token.encode())  # type: ignore[arg-type]
    assert str(info.value) == message
