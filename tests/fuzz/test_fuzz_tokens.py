"""Fuzz the compact JWS tokens: the JWS layer, owner tokens, footage requests and live links.

Requests are self-signed by whoever sends them, so a stranger controls every claim behind a valid
signature: the structured targets sign perturbed claims with the key the token names. Owner
tokens and live links are signed here with a paired owner's key, as a buggy phone would.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from consent import jws
from consent.errors import (
    RequestInvalid,
    SignerRemoved,
    TokenExpired,
    TokenInvalid,
    TokenNotYetValid,
    UnknownSigner,
    WrongAudience,
)
from consent.models import ConsentRequest, PairedOwner, RequesterIdentity
from consent.requests import REQUEST_TYP, sign_request, verify_request
from consent.tokens import CONSENT_TYP, DECLINE_TYP, REVOKE_TYP, OwnerToken, verify_owner_token
from crypto import age
from crypto.keys import key_id
from crypto.signed import b64url, b64url_decode
from hub.wire.live_link import (
    LINK_TYP,
    LinkClaims,
    LinkExpired,
    LinkInvalid,
    mint_link_token,
    parse_link_token,
)
from tests.fuzz.kit import (
    bytes_target,
    fuzz_settings,
    parse_or_refuse,
    perturbed_json,
    text_target,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.timeout(120)]

NOW = 1_790_000_000
_SAFE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CAMERA = re.compile(r"\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEVICE_ID = "abcdefghijklmnop"
OWNER = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
OWNER_ID = key_id(OWNER.public_key())
REMOVED = Ed25519PrivateKey.from_private_bytes(bytes(range(3, 35)))
OWNERS = [
    PairedOwner.from_public(OWNER.public_key()),
    PairedOwner.from_public(REMOVED.public_key(), removed=True),
]
REQUESTER = Ed25519PrivateKey.from_private_bytes(bytes(range(4, 36)))
RECIPIENT = str(age.X25519Identity.generate().recipient())

CONSENT_CLAIMS = {
    "iss": OWNER_ID,
    "aud": DEVICE_ID,
    "jti": "release-0001",
    "iat": NOW - 10,
    "nbf": NOW - 10,
    "exp": NOW + 3600,
    "sub": "requester-key-id",
    "request_id": "0123456789abcdef0123456789abcdef",
    "manifest_sha256": "ab" * 32,
    "max_downloads": 2,
    "disclosures": {"name": "Ada"},
}
DECLINE_CLAIMS = {
    **{k: CONSENT_CLAIMS[k] for k in ("iss", "aud", "jti", "iat", "nbf", "exp", "request_id")},
    "reason": "no",
}
REVOKE_CLAIMS = {
    **{k: CONSENT_CLAIMS[k] for k in ("iss", "aud", "jti", "iat", "nbf", "exp")},
    "release_id": "release-0001",
}
TOKEN_CLAIMS = {CONSENT_TYP: CONSENT_CLAIMS, DECLINE_TYP: DECLINE_CLAIMS, REVOKE_TYP: REVOKE_CLAIMS}
OWNER_ERRORS = (
    TokenInvalid,
    UnknownSigner,
    SignerRemoved,
    WrongAudience,
    TokenNotYetValid,
    TokenExpired,
)


def _compact(claims: Any, *, typ: str, kid: str, key: Ed25519PrivateKey) -> str:
    """A compact JWS over any JSON claims (``jws.sign_compact`` refuses non-canonical ones)."""
    header = json.dumps({"alg": "Ed25519", "kid": kid, "typ": typ}).encode()
    signing_input = f"{b64url(header)}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


def _owner_token(claims: Any, typ: str, key: Ed25519PrivateKey = OWNER) -> str:
    return _compact(claims, typ=typ, kid=key_id(key.public_key()), key=key)


def _jsonable(value: Any) -> Any:
    """JSON round trip: what a token's claims are after the device decodes them."""
    return json.loads(json.dumps(value))


TOKENS = [_owner_token(claims, typ) for typ, claims in TOKEN_CLAIMS.items()]
REQUEST = sign_request(
    REQUESTER,
    RECIPIENT,
    RequesterIdentity("Dana Reyes", "Springfield PD", "local_agency", "Springfield", "records"),
    camera="front",
    window_start_s=NOW - 7200,
    window_end_s=NOW - 3600,
    category="package_theft",
    case_reference="SPD-1",
    reason="A parcel was taken from the porch.",
    legal_basis="voluntary",
    issued_at_s=NOW - 60,
    expires_at_s=NOW + 86400,
    nonce="0123456789abcdef0123",
)
REQUEST_CLAIMS = json.loads(b64url_decode(REQUEST.split(".")[1]))
LINK = mint_link_token(OWNER, device_id=DEVICE_ID, camera="front", now_s=NOW, jti="j" * 22)
LINK_CLAIMS = json.loads(b64url_decode(LINK.split(".")[1]))


# -- the JWS layer ------------------------------------------------------------------------------


@bytes_target([t.encode() for t in TOKENS] + [REQUEST.encode()], share=4)
def test_decode_compact(data: bytes) -> None:
    result = parse_or_refuse(
        lambda: jws.decode_compact(data, typ=CONSENT_TYP), (TokenInvalid,), input_size=len(data)
    )
    if isinstance(result, jws.Compact):
        assert set(result.header) == {"alg", "kid", "typ"}
        assert len(result.signature) == 64


@fuzz_settings(share=2)
@given(
    st.one_of(
        st.binary(max_size=64).map(lambda b: b64url(b)),
        st.text(max_size=64),
        st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4).map(
            lambda d: b64url(json.dumps(d).encode())
        ),
    ),
    st.sampled_from(TOKENS),
)
def test_decode_compact_header_part(header: str, token: str) -> None:
    spliced = ".".join([header, *token.split(".")[1:]])
    parse_or_refuse(lambda: jws.decode_compact(spliced, typ=CONSENT_TYP), (TokenInvalid,))


# -- owner tokens (consent, decline, revoke) ----------------------------------------------------


@bytes_target([t.encode() for t in TOKENS], share=2)
def test_owner_token_bytes(data: bytes) -> None:
    for typ in TOKEN_CLAIMS:
        parse_or_refuse(
            lambda typ=typ: verify_owner_token(
                data, typ=typ, owners=OWNERS, device_id=DEVICE_ID, now=NOW
            ),
            OWNER_ERRORS,
            input_size=len(data),
        )


@st.composite
def _signed_owner_tokens(draw: st.DrawFn) -> tuple[str, str]:
    typ = draw(st.sampled_from(list(TOKEN_CLAIMS)))
    claims = _jsonable(draw(perturbed_json(TOKEN_CLAIMS[typ])))
    key = draw(st.sampled_from([OWNER, OWNER, REMOVED, REQUESTER]))
    return _owner_token(claims, typ, key), typ


@fuzz_settings(share=4)
@given(_signed_owner_tokens())
def test_owner_token_signed_by_a_paired_owner(token_and_typ: tuple[str, str]) -> None:
    token, typ = token_and_typ
    result = parse_or_refuse(
        lambda: verify_owner_token(token, typ=typ, owners=OWNERS, device_id=DEVICE_ID, now=NOW),
        OWNER_ERRORS,
        input_size=len(token),
    )
    if isinstance(result, OwnerToken):
        assert result.owner.key_id == OWNER_ID
        assert not result.owner.removed
        assert result.claims["exp"] > NOW
        for name in ("iss", "aud", "jti", "sub", "request_id", "release_id"):
            assert name not in result.claims or _SAFE_ID.fullmatch(result.claims[name]), name
        assert "manifest_sha256" not in result.claims or _HEX64.fullmatch(
            result.claims["manifest_sha256"]
        )


# -- footage requests (self-signed by a stranger) -----------------------------------------------


@bytes_target([REQUEST.encode()], share=2)
def test_request_bytes(data: bytes) -> None:
    parse_or_refuse(lambda: verify_request(data, NOW), (RequestInvalid,), input_size=len(data))


def _claimed_key_id(claims: Any) -> str:
    """The key id of the key the claims name, as a real sender's header would carry it."""
    try:
        raw = b64url_decode(claims["requester"]["key"])
        return key_id(Ed25519PublicKey.from_public_bytes(raw))
    except (KeyError, TypeError, ValueError):
        return key_id(REQUESTER.public_key())


@fuzz_settings(share=5)
@given(perturbed_json(REQUEST_CLAIMS))
def test_request_signed_by_its_sender(claims: Any) -> None:
    claims = _jsonable(claims)
    token = _compact(claims, typ=REQUEST_TYP, kid=_claimed_key_id(claims), key=REQUESTER)
    result = parse_or_refuse(
        lambda: verify_request(token, NOW), (RequestInvalid,), input_size=len(token)
    )
    if isinstance(result, ConsentRequest):
        assert result.requester_key_id == key_id(REQUESTER.public_key())
        assert result.window_s > 0
        assert _CAMERA.fullmatch(result.camera), result.camera


# -- live links -------------------------------------------------------------------------------


def _owner_key(kid: str) -> Any:
    return OWNER.public_key() if kid == OWNER_ID else None


@text_target([LINK], share=2)
def test_live_link_text(token: str) -> None:
    parse_or_refuse(
        lambda: parse_link_token(token, device_id=DEVICE_ID, owner_key=_owner_key, now_s=NOW),
        (LinkInvalid, LinkExpired),
        input_size=len(token),
    )


@fuzz_settings(share=3)
@given(perturbed_json(LINK_CLAIMS))
def test_live_link_signed_by_an_owner(claims: Any) -> None:
    token = _owner_token(_jsonable(claims), LINK_TYP)
    result = parse_or_refuse(
        lambda: parse_link_token(token, device_id=DEVICE_ID, owner_key=_owner_key, now_s=NOW),
        (LinkInvalid, LinkExpired),
        input_size=len(token),
    )
    if isinstance(result, LinkClaims):
        assert result.owner_key_id == OWNER_ID
        assert result.expires_s > NOW
