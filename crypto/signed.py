"""Canonical JSON and Ed25519-signed JSON documents (clip manifests, release data, decisions).

A signed document is a JSON object::

    {"alg": "Ed25519", "key": <b64url raw public key>, "body": {...}, "sig": <b64url signature>}

where the signature covers the canonical JSON of ``body``: keys sorted, no insignificant whitespace,
UTF-8, integers only (floats are refused because their text form is not canonical across languages).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from crypto.errors import SignatureError

__all__ = [
    "b64url",
    "b64url_decode",
    "canonical_json",
    "sign_document",
    "verify_document",
]

_ALG = "Ed25519"
_MAX_DEPTH = 32


def canonical_json(obj: Any) -> bytes:
    """Serialise ``obj`` to canonical JSON bytes; refuses floats, non-string keys and deep nesting."""
    _check_canonical(obj, 0)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding: refuses padding, stray characters and non-canonical tails."""
    if not isinstance(text, str) or "=" in text or len(text) % 4 == 1:
        raise ValueError("must be unpadded base64url")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be unpadded base64url") from exc
    if b64url(raw) != text:
        raise ValueError("must be canonical unpadded base64url")
    return raw


def sign_document(body: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Wrap ``body`` with an Ed25519 signature over its canonical JSON."""
    raw_public = key.public_key().public_bytes_raw()
    signature = key.sign(canonical_json(dict(body)))
    return {"alg": _ALG, "key": b64url(raw_public), "body": dict(body), "sig": b64url(signature)}


def verify_document(doc: Mapping[str, Any], public_key: Ed25519PublicKey) -> dict[str, Any]:
    """Return the body of ``doc`` if it is signed by ``public_key``; raise SignatureError otherwise."""
    if not isinstance(doc, Mapping) or set(doc) != {"alg", "key", "body", "sig"}:
        raise SignatureError(
            "signed document must be an object with exactly alg, key, body and sig; "
            "it was altered or is not a Doorward signed document"
        )
    if doc["alg"] != _ALG:
        raise SignatureError(f"signed document algorithm must be {_ALG}, got {doc['alg']!r}")
    body = doc["body"]
    if not isinstance(body, dict):
        raise SignatureError("signed document body must be a JSON object")
    try:
        claimed = b64url_decode(doc["key"])
        signature = b64url_decode(doc["sig"])
    except ValueError as exc:
        raise SignatureError(f"signed document key or signature is malformed: {exc}") from exc
    if claimed != public_key.public_bytes_raw():
        raise SignatureError(
            "signed document was signed by a different key than expected; "
            "check that it comes from the device you paired with"
        )
    try:
        message = canonical_json(body)
    except ValueError as exc:
        # Floats, deep nesting: no signer made this body, and it must not crash the reader.
        raise SignatureError(
            f"signed document body is not canonical JSON ({exc}); it was altered"
        ) from exc
    try:
        public_key.verify(signature, message)
    except InvalidSignature as exc:
        raise SignatureError("signature does not verify: the document was altered") from exc
    return body


def _check_canonical(obj: Any, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError(f"must nest at most {_MAX_DEPTH} levels deep")
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return
    if isinstance(obj, float):
        raise ValueError(f"must not contain floats (not canonical), got {obj!r}")
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _check_canonical(item, depth + 1)
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ValueError(f"object keys must be strings, got {key!r}")
            _check_canonical(value, depth + 1)
        return
    raise ValueError(f"must contain only JSON values, got {type(obj).__name__}")
