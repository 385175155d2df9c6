"""Compact JWS (RFC 7515 §7.1) signed with Ed25519, alg name "Ed25519" (RFC 9864).

Written on `cryptography` rather than joserfc (which knows the "Ed25519" name since 1.x) because
every token here needs checks a general JOSE library does not make: the size cap before any
decoding, refusal of repeated JSON member names (RFC 8259 leaves their meaning open, so two
parsers could read different claims), strict unpadded base64url, an exact header member set, and
the algorithm pinned by the caller, never read from the token. The tests check interoperability
with joserfc in both directions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consent.errors import DuplicateKey, TokenInvalid, TokenTooLarge
from crypto.signed import b64url, b64url_decode, canonical_json

ALG = "Ed25519"
MAX_TOKEN_BYTES = 16 * 1024  # caps parsing work an unauthenticated sender can cause
_SIG_BYTES = 64


@dataclass(frozen=True, slots=True)
class Compact:
    """A decoded but not yet verified compact JWS."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def sign_compact(
    claims: dict[str, Any], *, typ: str, kid: str, sign: Callable[[bytes], bytes]
) -> str:
    """Serialise ``claims`` as a compact JWS signed by ``sign`` (an Ed25519 signing function)."""
    header = {"alg": ALG, "kid": kid, "typ": typ}
    signing_input = f"{b64url(canonical_json(header))}.{b64url(canonical_json(claims))}"
    signature = sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(signature)}"


def decode_compact(token: str | bytes, *, typ: str, max_bytes: int = MAX_TOKEN_BYTES) -> Compact:
    """Split and parse ``token``; checks size, encoding, header and JSON strictness, not signature."""
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError as exc:
            raise TokenInvalid("token must be ASCII") from exc
    if not isinstance(token, str):
        raise TokenInvalid(f"token must be a string, got {type(token).__name__}")
    if len(token) > max_bytes:
        raise TokenTooLarge(f"token is {len(token)} bytes, more than the limit of {max_bytes}")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenInvalid(f"token must have 3 dot-separated parts, got {len(parts)}")
    header = _json_object(_b64(parts[0], "header"), "header")
    if "alg" not in header:
        raise TokenInvalid("token header has no alg")
    if header["alg"] != ALG:
        raise TokenInvalid(f"token algorithm must be {ALG}, got {header['alg']!r}")
    if set(header) != {"alg", "kid", "typ"}:
        raise TokenInvalid(
            f"token header must have exactly alg, kid and typ, got {', '.join(sorted(header))}"
        )
    if header["typ"] != typ:
        raise TokenInvalid(f"token type must be {typ!r}, got {header['typ']!r}")
    if not isinstance(header["kid"], str) or not header["kid"]:
        raise TokenInvalid("token kid must be a non-empty string")
    claims = _json_object(_b64(parts[1], "payload"), "payload")
    signature = _b64(parts[2], "signature")
    if len(signature) != _SIG_BYTES:
        raise TokenInvalid(f"token signature must be {_SIG_BYTES} bytes, got {len(signature)}")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    return Compact(header, claims, signing_input, signature)


def verify_signature(compact: Compact, public_key: Ed25519PublicKey) -> None:
    """Raise TokenInvalid unless ``public_key`` made the signature of ``compact``."""
    try:
        public_key.verify(compact.signature, compact.signing_input)
    except InvalidSignature as exc:
        raise TokenInvalid("token signature does not verify: it was altered or forged") from exc


def loads_strict(data: bytes, what: str) -> Any:
    """JSON with repeated member names and NaN/Infinity refused."""
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except DuplicateKey:
        raise
    except (ValueError, RecursionError) as exc:
        raise TokenInvalid(f"{what} is not valid JSON") from exc


def _b64(part: str, what: str) -> bytes:
    try:
        return b64url_decode(part)
    except ValueError as exc:
        raise TokenInvalid(f"token {what} is not unpadded base64url") from exc


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    value = loads_strict(data, f"token {what}")
    if not isinstance(value, dict):
        raise TokenInvalid(f"token {what} must be a JSON object")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(f"JSON member {key[:64]!r} appears twice")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise TokenInvalid(f"JSON constant {name} is not allowed")
