"""Footage requests: compact JWS signed by the requester's own Ed25519 key (DESIGN §Consent flow 1).

A request is self-signed: the key in the claims is the requester's identity, and the signature
proves the sender holds it. Policy, not this module, decides whom to trust.

Text a requester writes reaches the owner's screen, so a new request may hold no control or
bidirectional-formatting character in any field (``consent.text.unsafe_character``); a request
read back from storage is checked with ``strict_text=False``, so one stored before that rule
still loads (and is shown escaped).
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consent import jws
from consent.errors import RequestInvalid, TokenInvalid
from consent.models import CLOCK_SLACK_S, ConsentRequest, RequesterIdentity
from consent.text import unsafe_character
from crypto import age
from crypto.errors import CryptoError
from crypto.keys import key_id
from crypto.signed import b64url, b64url_decode

__all__ = ["MAX_REQUEST_BYTES", "REQUEST_TYP", "request_id_of", "sign_request", "verify_request"]

REQUEST_TYP = "doorward-request+jws"
MAX_REQUEST_BYTES = 8 * 1024  # a request is a few hundred bytes of text; caps unauthenticated work

_TOP = {
    "v",
    "iat",
    "exp",
    "nonce",
    "requester",
    "camera",
    "window",
    "category",
    "detail",
    "case_reference",
    "reason",
    "legal_basis",
}
_REQUESTER = {"key", "recipient", "name", "organisation", "kind", "jurisdiction", "contact"}


def request_id_of(token: str) -> str:
    """The request's id: hex of the first 16 bytes of SHA-256 of the token text (hex, so an id
    never begins with '-' where a command line would take it for an option)."""
    return hashlib.sha256(token.encode("ascii")).digest()[:16].hex()


def sign_request(
    signing_key: Ed25519PrivateKey,
    recipient: str,
    identity: RequesterIdentity,
    *,
    camera: str,
    window_start_s: int,
    window_end_s: int,
    category: str,
    case_reference: str,
    reason: str,
    legal_basis: str,
    issued_at_s: int,
    expires_at_s: int,
    nonce: str,
    detail: str = "",
) -> str:
    """Sign a request as the requester; ``recipient`` is the age recipient releases are wrapped to."""
    public = signing_key.public_key()
    kid = key_id(public)
    request = ConsentRequest(
        request_id="",
        requester_key=public,
        requester_key_id=kid,
        recipient=str(recipient),
        identity=identity,
        camera=camera,
        window_start_s=window_start_s,
        window_end_s=window_end_s,
        category=category,
        detail=detail,
        case_reference=case_reference,
        reason=reason,
        legal_basis=legal_basis,
        issued_at_s=issued_at_s,
        expires_at_s=expires_at_s,
        nonce=nonce,
    )
    problem = text_problem(request)
    if problem is not None:
        raise ValueError(problem)
    return jws.sign_compact(_claims(request), typ=REQUEST_TYP, kid=kid, sign=signing_key.sign)


def verify_request(token: str | bytes, now: int, *, strict_text: bool = True) -> ConsentRequest:
    """Parse and verify a request token at time ``now``; raise RequestInvalid on any fault.

    ``strict_text`` refuses control and bidirectional-formatting characters in every text
    field (as for a new request); pass False to read back a request already stored."""
    try:
        compact = jws.decode_compact(token, typ=REQUEST_TYP, max_bytes=MAX_REQUEST_BYTES)
    except TokenInvalid as exc:
        raise RequestInvalid(f"request refused: {exc}") from exc
    claims = compact.claims
    _members("request", claims, _TOP)
    if claims["v"] != 1:
        raise RequestInvalid(f"request version must be 1, got {claims['v']!r:.20}")
    requester = claims["requester"]
    _members("request requester", requester, _REQUESTER)
    window = claims["window"]
    _members("request window", window, {"start", "end"})
    public = _public_key(requester["key"])
    kid = key_id(public)
    if compact.header["kid"] != kid:
        raise RequestInvalid("request kid does not match the requester key in its claims")
    try:
        jws.verify_signature(compact, public)
    except TokenInvalid as exc:
        raise RequestInvalid(f"request refused: {exc}") from exc
    text = token if isinstance(token, str) else token.decode("ascii")
    try:
        request = ConsentRequest(
            request_id=request_id_of(text),
            requester_key=public,
            requester_key_id=kid,
            recipient=requester["recipient"],
            identity=RequesterIdentity(
                name=requester["name"],
                organisation=requester["organisation"],
                kind=requester["kind"],
                jurisdiction=requester["jurisdiction"],
                contact=requester["contact"],
            ),
            camera=claims["camera"],
            window_start_s=window["start"],
            window_end_s=window["end"],
            category=claims["category"],
            detail=claims["detail"],
            case_reference=claims["case_reference"],
            reason=claims["reason"],
            legal_basis=claims["legal_basis"],
            issued_at_s=claims["iat"],
            expires_at_s=claims["exp"],
            nonce=claims["nonce"],
        )
    except ValueError as exc:
        raise RequestInvalid(f"request refused: {exc}") from exc
    _check_times(request, now)
    problem = text_problem(request) if strict_text else None
    if problem is not None:
        raise RequestInvalid(f"request refused: {problem}")
    try:
        age.parse_recipient(request.recipient)
    except (CryptoError, ValueError) as exc:
        raise RequestInvalid(
            f"request refused: recipient {request.recipient[:80]!r} is not an age recipient"
        ) from exc
    return request


def text_problem(request: ConsentRequest) -> str | None:
    """Why a request's text may not be shown to an owner as it is, naming the field; or None."""
    who = request.identity
    fields = (
        ("name", who.name),
        ("organisation", who.organisation),
        ("jurisdiction", who.jurisdiction),
        ("contact", who.contact),
        ("reason", request.reason),
        ("detail", request.detail),
        ("case reference", request.case_reference),
        ("recipient", request.recipient),
        ("nonce", request.nonce),
    )
    for label, text in fields:
        found = unsafe_character(text)
        if found is not None:
            return (
                f"the {label} contains {found}; control and bidirectional-formatting "
                "characters are not allowed in requests"
            )
    return None


def _check_times(request: ConsentRequest, now: int) -> None:
    if request.expires_at_s <= now:
        raise RequestInvalid(f"request refused: it expired at {request.expires_at_s}, now is {now}")
    if request.issued_at_s > now + CLOCK_SLACK_S:
        raise RequestInvalid(
            f"request refused: iat {request.issued_at_s} is in the future (now {now}); "
            "check the requester's clock"
        )
    if request.window_end_s > now + CLOCK_SLACK_S:
        raise RequestInvalid(
            f"request refused: window ends at {request.window_end_s}, in the future (now {now})"
        )


def _claims(request: ConsentRequest) -> dict[str, Any]:
    identity = request.identity
    return {
        "v": 1,
        "iat": request.issued_at_s,
        "exp": request.expires_at_s,
        "nonce": request.nonce,
        "requester": {
            "key": b64url(request.requester_key.public_bytes_raw()),
            "recipient": request.recipient,
            "name": identity.name,
            "organisation": identity.organisation,
            "kind": identity.kind,
            "jurisdiction": identity.jurisdiction,
            "contact": identity.contact,
        },
        "camera": request.camera,
        "window": {"start": request.window_start_s, "end": request.window_end_s},
        "category": request.category,
        "detail": request.detail,
        "case_reference": request.case_reference,
        "reason": request.reason,
        "legal_basis": request.legal_basis,
    }


def _members(what: str, value: Any, expected: set[str]) -> None:
    if not isinstance(value, dict):
        raise RequestInvalid(f"request refused: {what} must be a JSON object")
    if set(value) != expected:
        missing = sorted(expected - set(value))
        extra = sorted(set(value) - expected)
        raise RequestInvalid(
            f"request refused: {what} members are wrong (missing: {', '.join(missing) or '-'}; "
            f"unknown: {', '.join(e[:32] for e in extra[:5]) or '-'})"
        )


def _public_key(text: Any) -> Ed25519PublicKey:
    try:
        raw = b64url_decode(text)
    except ValueError as exc:
        raise RequestInvalid("request refused: requester key is not base64url") from exc
    if len(raw) != 32:
        raise RequestInvalid(f"request refused: requester key must be 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)
