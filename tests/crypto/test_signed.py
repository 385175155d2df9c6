"""Canonical JSON and signed documents."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from crypto.errors import SignatureError
from crypto.signed import (
    b64url,
    b64url_decode,
    canonical_json,
    sign_document,
    verify_document,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert (
        canonical_json({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"x": 1.5}, "must not contain floats"),
        ({1: "x"}, "object keys must be strings"),
        ({"x": b"raw"}, "must contain only JSON values, got bytes"),
    ],
)
def test_canonical_json_refuses_non_canonical_values(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        canonical_json(value)


@given(st.binary(max_size=64))
def test_b64url_round_trip(data: bytes) -> None:
    text = b64url(data)
    assert "=" not in text
    assert b64url_decode(text) == data


@pytest.mark.parametrize("text", ["AA==", "A", "AB", "a+b/", "AB C"])
def test_b64url_decode_is_strict(text: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        b64url_decode(text)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
@pytest.mark.slow
def test_sign_and_verify_round_trip(body: dict[str, object]) -> None:
    key = Ed25519PrivateKey.generate()
    doc = sign_document(body, key)
    assert verify_document(doc, key.public_key()) == body


def test_altered_body_wrong_key_and_bad_shape_are_refused() -> None:
    key = Ed25519PrivateKey.generate()
    doc = sign_document({"clip": "c1", "segments": [1, 2]}, key)

    altered = {**doc, "body": {"clip": "c1", "segments": [1, 3]}}
    with pytest.raises(SignatureError, match="the document was altered"):
        verify_document(altered, key.public_key())

    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(SignatureError, match="signed by a different key than expected"):
        verify_document(doc, other)

    with pytest.raises(SignatureError, match="exactly alg, key, body and sig"):
        verify_document({**doc, "extra": 1}, key.public_key())

    with pytest.raises(SignatureError, match="algorithm must be Ed25519, got 'none'"):
        verify_document({**doc, "alg": "none"}, key.public_key())
