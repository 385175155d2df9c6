"""Live-view links: an owner-signed, short-lived, single-use token for the browser page.

The token is a compact JWS (``consent.jws``, Ed25519) that the owner's phone signs with its own
key: ``{"aud": <device id>, "cam": <camera>, "iat", "exp", "jti"}``. The device accepts it only
after the owner registered it with a signed ``POST /live/link`` (so a token nobody minted through
the API is refused), only while that owner is still paired, before ``exp``, and once. A link whose
``iat`` is more than :data:`MAX_CLOCK_SKEW_S` ahead of the device's clock is refused: otherwise a
link minted for next year would be valid from now until then, whatever ``MAX_LINK_TTL_S`` says.

Pure: no I/O and no clock; callers pass ``now_s``. The device keeps the links it accepted in
:class:`hub.server.live.links.LinkBook`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consent.errors import TokenInvalid
from consent.jws import decode_compact, sign_compact, verify_signature
from crypto.keys import key_id
from hub.wire.errors import Conflict, Unauthorized

__all__ = [
    "LINK_TYP",
    "MAX_CLOCK_SKEW_S",
    "MAX_LINK_TTL_S",
    "LinkClaims",
    "LinkExpired",
    "LinkInvalid",
    "LinkUsed",
    "mint_link_token",
    "parse_link_token",
]

LINK_TYP = "doorward-live-link+jwt"
MAX_LINK_TTL_S = 900  # a link is for "someone is at the door now", not a standing share
MAX_CLOCK_SKEW_S = 60  # how far ahead of the device's clock a phone's ``iat`` may be


class LinkInvalid(Unauthorized):
    """The live link is malformed, not signed by a current owner, or was never registered:
    ask the owner for a new link."""

    code = "token_invalid"


class LinkExpired(Unauthorized):
    """The live link has expired: ask the owner for a new link."""

    status = 410
    code = "expired"


class LinkUsed(Conflict):
    """The live link was already used (links are single-use): ask the owner for a new link."""

    code = "token_replayed"


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What a verified link says: who minted it, for which camera, until when, and its id."""

    owner_key_id: str
    camera: str
    issued_s: int
    expires_s: int
    jti: str = field(repr=False)


def mint_link_token(
    key: Ed25519PrivateKey,
    *,
    device_id: str,
    camera: str,
    now_s: int,
    ttl_s: int = 300,
    jti: str | None = None,
) -> str:
    """A link token signed by an owner's key, valid for ``ttl_s`` seconds from ``now_s``."""
    if not 0 < ttl_s <= MAX_LINK_TTL_S:
        raise ValueError(f"ttl_s must be 1-{MAX_LINK_TTL_S}, got {ttl_s}")
    claims = {
        "aud": device_id,
        "cam": camera,
        "iat": int(now_s),
        "exp": int(now_s) + ttl_s,
        "jti": jti or secrets.token_urlsafe(16),
    }
    return sign_compact(claims, typ=LINK_TYP, kid=key_id(key.public_key()), sign=key.sign)


def parse_link_token(
    token: str,
    *,
    device_id: str,
    owner_key: Callable[[str], Ed25519PublicKey | None],
    now_s: float,
) -> LinkClaims:
    """Verify a link token against the current owners (``owner_key(kid)``) and the time."""
    try:
        compact = decode_compact(token, typ=LINK_TYP, max_bytes=2048)
    except TokenInvalid as exc:
        raise LinkInvalid(f"live link token is malformed: {exc}") from exc
    kid = compact.header["kid"]
    public = owner_key(kid)
    if public is None:
        raise LinkInvalid("live link was not made by a current owner of this doorbell")
    try:
        verify_signature(compact, public)
    except TokenInvalid as exc:
        raise LinkInvalid("live link signature does not verify") from exc
    claims = compact.claims
    iat, exp, cam, jti = (claims.get(k) for k in ("iat", "exp", "cam", "jti"))
    if (
        claims.get("aud") != device_id
        or not isinstance(iat, int)
        or not isinstance(exp, int)
        or not isinstance(cam, str)
        or not isinstance(jti, str)
        or not 16 <= len(jti) <= 64
    ):
        raise LinkInvalid("live link is not for this doorbell or lacks aud, cam, iat, exp or jti")
    if not 0 < exp - iat <= MAX_LINK_TTL_S:
        raise LinkInvalid(f"live link must be valid for 1-{MAX_LINK_TTL_S} s")
    if iat > now_s + MAX_CLOCK_SKEW_S:
        raise LinkInvalid(
            f"live link is issued {int(iat - now_s)} s ahead of the doorbell's clock (at most "
            f"{MAX_CLOCK_SKEW_S} s allowed); check the phone's clock and mint a new link"
        )
    if now_s >= exp:
        raise LinkExpired("this live link has expired; ask the owner for a new one")
    return LinkClaims(kid, cam, iat, exp, jti)
