"""Owner-signed tokens: consent (approve), decline and revoke — compact JWS, alg pinned to Ed25519.

The device verifies every owner token against the owners it currently has paired: the header's
``kid`` selects the owner, whose key must make the signature; a removed owner's token is refused.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent import jws
from consent._note import MAX_TREE_SIZE, Checkpoint
from consent.errors import (
    SignerRemoved,
    TokenExpired,
    TokenInvalid,
    TokenNotYetValid,
    UnknownSigner,
    WrongAudience,
)
from consent.models import CLOCK_SLACK_S, ConsentClaims, PairedOwner
from crypto.keys import key_id

__all__ = [
    "CONSENT_TYP",
    "DECLINE_TYP",
    "DISCLOSURE_FIELDS",
    "REVOKE_TYP",
    "OwnerToken",
    "checkpoint_claim",
    "consent_claims",
    "sign_consent",
    "sign_decline",
    "sign_revocation",
    "verify_owner_token",
]

CONSENT_TYP = "doorward-consent+jws"
DECLINE_TYP = "doorward-decline+jws"
REVOKE_TYP = "doorward-revoke+jws"
DISCLOSURE_FIELDS = ("name", "address", "email", "phone", "note")
MAX_LIFETIME_S = 90 * 86400
MAX_DOWNLOADS = 100

_COMMON = {"iss", "aud", "jti", "iat", "nbf", "exp"}
_MEMBERS = {
    CONSENT_TYP: _COMMON | {"sub", "request_id", "manifest_sha256", "max_downloads", "disclosures"},
    DECLINE_TYP: _COMMON | {"request_id", "reason"},
    REVOKE_TYP: _COMMON | {"release_id"},
}
# Optional members: a consent token carries the checkpoint the owner verified, when it has one.
_OPTIONAL = {CONSENT_TYP: {"checkpoint"}}
# Used with fullmatch: `$` alone also matches before a trailing newline.
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class OwnerToken:
    """A verified owner token: the signing owner and the claims."""

    owner: PairedOwner
    claims: dict[str, Any]

    @property
    def token_id(self) -> str:
        """The token's ``jti`` claim, as a string."""
        return str(self.claims["jti"])


def sign_consent(
    owner_key: Ed25519PrivateKey,
    *,
    device_id: str,
    requester_key_id: str,
    request_id: str,
    manifest: bytes,
    token_id: str,
    issued_at_s: int,
    expires_at_s: int,
    max_downloads: int = 1,
    disclosures: dict[str, str] | None = None,
    checkpoint: Checkpoint | None = None,
) -> str:
    """Sign a consent token for the release described by ``manifest`` (its exact bytes);
    ``checkpoint`` is the audit checkpoint the owner's phone last verified, if any (claim
    ``checkpoint``: its size and hex root hash)."""
    claims: dict[str, Any] = {
        "sub": requester_key_id,
        "request_id": request_id,
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "max_downloads": max_downloads,
        "disclosures": dict(disclosures or {}),
    }
    if checkpoint is not None:
        claims["checkpoint"] = {"size": checkpoint.size, "root_hash": checkpoint.root_hash.hex()}
    return _sign(owner_key, CONSENT_TYP, device_id, token_id, issued_at_s, expires_at_s, claims)


def sign_decline(
    owner_key: Ed25519PrivateKey,
    *,
    device_id: str,
    request_id: str,
    reason: str,
    token_id: str,
    issued_at_s: int,
    expires_at_s: int,
) -> str:
    """Sign the owner's refusal of a request, with the reason the requester will be told."""
    claims = {"request_id": request_id, "reason": reason}
    return _sign(owner_key, DECLINE_TYP, device_id, token_id, issued_at_s, expires_at_s, claims)


def sign_revocation(
    owner_key: Ed25519PrivateKey,
    *,
    device_id: str,
    release_id: str,
    token_id: str,
    issued_at_s: int,
    expires_at_s: int,
) -> str:
    """Sign the withdrawal of a release that has not been downloaded yet."""
    claims = {"release_id": release_id}
    return _sign(owner_key, REVOKE_TYP, device_id, token_id, issued_at_s, expires_at_s, claims)


def verify_owner_token(
    token: str | bytes,
    *,
    typ: str,
    owners: Iterable[PairedOwner],
    device_id: str,
    now: int,
) -> OwnerToken:
    """Verify an owner token of type ``typ`` for this device at ``now``.

    Raises TokenInvalid (and its DuplicateKey / TokenTooLarge), UnknownSigner, SignerRemoved,
    WrongAudience, TokenNotYetValid or TokenExpired.
    """
    compact = jws.decode_compact(token, typ=typ)
    kid = compact.header["kid"]
    owner = next((o for o in owners if o.key_id == kid), None)
    if owner is None:
        raise UnknownSigner(f"token is signed by key {kid[:64]!r}, which is not a paired owner")
    jws.verify_signature(compact, owner.signing_public)
    if owner.removed:
        raise SignerRemoved(f"token is signed by owner {kid!r}, who has been removed")
    claims = compact.claims
    _check_members(claims, _MEMBERS[typ], _OPTIONAL.get(typ, set()))
    if claims["iss"] != kid:
        raise TokenInvalid("token iss does not match the signing key id")
    if claims["aud"] != device_id:
        raise WrongAudience(
            f"token is for device {str(claims['aud'])[:64]!r}, this device is {device_id!r}"
        )
    if claims["nbf"] > now + CLOCK_SLACK_S or claims["iat"] > now + CLOCK_SLACK_S:
        raise TokenNotYetValid(f"token is valid from {claims['nbf']}, now is {now}")
    if claims["exp"] <= now:
        raise TokenExpired(f"token expired at {claims['exp']}, now is {now}")
    return OwnerToken(owner, claims)


def consent_claims(token: OwnerToken) -> ConsentClaims:
    """The typed claims of a verified consent token."""
    c = token.claims
    checkpoint = checkpoint_claim(c["checkpoint"]) if "checkpoint" in c else None
    return ConsentClaims(
        issuer=c["iss"],
        audience=c["aud"],
        subject=c["sub"],
        token_id=c["jti"],
        issued_at_s=c["iat"],
        not_before_s=c["nbf"],
        expires_at_s=c["exp"],
        request_id=c["request_id"],
        manifest_sha256=c["manifest_sha256"],
        max_downloads=c["max_downloads"],
        disclosures=dict(c["disclosures"]),
        checkpoint_size=checkpoint[0] if checkpoint else None,
        checkpoint_root=checkpoint[1] if checkpoint else None,
    )


def _sign(
    key: Ed25519PrivateKey,
    typ: str,
    device_id: str,
    token_id: str,
    issued_at_s: int,
    expires_at_s: int,
    extra: dict[str, Any],
) -> str:
    kid = key_id(key.public_key())
    claims = {
        "iss": kid,
        "aud": device_id,
        "jti": token_id,
        "iat": issued_at_s,
        "nbf": issued_at_s,
        "exp": expires_at_s,
        **extra,
    }
    _check_members(claims, _MEMBERS[typ], _OPTIONAL.get(typ, set()))
    return jws.sign_compact(claims, typ=typ, kid=kid, sign=key.sign)


def _check_members(
    claims: dict[str, Any], expected: set[str], optional: set[str] | frozenset[str] = frozenset()
) -> None:
    present = set(claims) - optional
    if present != expected:
        missing = ", ".join(sorted(expected - present)) or "-"
        extra = ", ".join(k[:32] for k in sorted(present - expected)[:5]) or "-"
        raise TokenInvalid(f"token claims are wrong (missing: {missing}; unknown: {extra})")
    for name in ("iss", "aud", "jti"):
        _id(name, claims[name])
    for name in ("iat", "nbf", "exp"):
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**40:
            raise TokenInvalid(f"token {name} must be an integer time, got {value!r:.40}")
    if claims["nbf"] < claims["iat"] or claims["exp"] <= claims["nbf"]:
        raise TokenInvalid("token times must satisfy iat <= nbf < exp")
    if claims["exp"] - claims["iat"] > MAX_LIFETIME_S:
        raise TokenInvalid(f"token lifetime must be at most {MAX_LIFETIME_S} s")
    for name in ("sub", "request_id", "release_id"):
        if name in claims:
            _id(name, claims[name])
    if "manifest_sha256" in claims and not (
        isinstance(claims["manifest_sha256"], str)
        and _HEX64_RE.fullmatch(claims["manifest_sha256"])
    ):
        raise TokenInvalid("token manifest_sha256 must be 64 lowercase hex digits")
    if "max_downloads" in claims:
        value = claims["max_downloads"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DOWNLOADS:
            raise TokenInvalid(
                f"token max_downloads must be 1 to {MAX_DOWNLOADS}, got {value!r:.20}"
            )
    if "disclosures" in claims:
        _disclosures(claims["disclosures"])
    if "checkpoint" in claims:
        checkpoint_claim(claims["checkpoint"])
    if "reason" in claims and not (
        isinstance(claims["reason"], str) and 1 <= len(claims["reason"]) <= 2000
    ):
        raise TokenInvalid("token reason must be 1 to 2000 characters")


def _disclosures(value: Any) -> None:
    if not isinstance(value, dict) or not set(value) <= set(DISCLOSURE_FIELDS):
        raise TokenInvalid(f"token disclosures may only hold {', '.join(DISCLOSURE_FIELDS)}")
    for name, text in value.items():
        if not isinstance(text, str) or not 1 <= len(text) <= 500:
            raise TokenInvalid(f"token disclosure {name} must be 1 to 500 characters")


def checkpoint_claim(value: Any) -> tuple[int, bytes]:
    """The (size, root hash) of a consent token's ``checkpoint`` claim; TokenInvalid if it is not
    exactly a tree size and 64 lowercase hex digits."""
    if not isinstance(value, dict) or set(value) != {"size", "root_hash"}:
        raise TokenInvalid("token checkpoint must hold exactly size and root_hash")
    size, root = value["size"], value["root_hash"]
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
        raise TokenInvalid(f"token checkpoint size must be a tree size, got {size!r:.24}")
    if not (isinstance(root, str) and _HEX64_RE.fullmatch(root)):
        raise TokenInvalid("token checkpoint root_hash must be 64 lowercase hex digits")
    return size, bytes.fromhex(root)


def _id(name: str, value: Any) -> None:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise TokenInvalid(f"token {name} must be an id of 1 to 128 safe characters")
