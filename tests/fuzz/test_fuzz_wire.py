"""Fuzz what the device reads before it knows who is talking: RFC 9421 signature headers and RFC
9530 digests on every API request, and the zeroconf TXT records a phone reads off the LAN.

``RequestVerifier.verify`` either returns who signed or raises ``SignatureRejected``; a TXT record
either describes a device or raises ``DiscoveryError``.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from crypto.keys import key_id
from crypto.signed import b64url
from hub.wire.discovery import DiscoveredDevice, DiscoveryError
from hub.wire.httpsig import (
    RequestVerifier,
    SignatureRejected,
    VerifiedRequest,
    sign_http_request,
)
from hub.wire.replay import ReplayCache
from tests.fuzz.kit import bytes_target, fuzz_bytes, fuzz_settings, fuzz_text, parse_or_refuse

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.timeout(120)]

NOW = 1_790_000_000
DEVICE_ID = "abcdefghijklmnop"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(7, 39)))
KEY_ID = key_id(KEY.public_key())
URL = "https://doorbell.local:8443/requests?since=0"
BODY = b'{"token": "x"}'
SIGNED = sign_http_request(
    "POST",
    URL,
    BODY,
    key=KEY,
    key_id=KEY_ID,
    tag=DEVICE_ID,
    created_s=NOW,
    nonce="n0nce-0123456789abcdef",
)
EMPTY = sign_http_request(
    "GET",
    "https://doorbell.local:8443/clips",
    b"",
    key=KEY,
    key_id=KEY_ID,
    tag=DEVICE_ID,
    created_s=NOW - 30,
    nonce="another-nonce-0123456789",
)
FIELDS = ("Signature-Input", "Signature", "Content-Digest")


def _lookup(kid: str) -> Ed25519PublicKey | None:
    return KEY.public_key() if kid == KEY_ID else None


def _verify(method: str, url: str, headers: Any, body: bytes) -> VerifiedRequest:
    verifier = RequestVerifier(
        device_id=DEVICE_ID, lookup_key=_lookup, replay=ReplayCache(window_s=60)
    )
    return verifier.verify(method, url, headers, body, now_s=NOW)


def _latin1(data: bytes) -> str:
    return data.decode("latin-1")  # how aiohttp hands header values over


@bytes_target([v.encode("latin-1") for v in (*SIGNED.values(), *EMPTY.values())], share=2)
def test_signature_headers(value: bytes) -> None:
    for field in FIELDS:
        headers = {**SIGNED, field: _latin1(value)}
        result = parse_or_refuse(
            lambda h=headers: _verify("POST", URL, h, BODY),
            (SignatureRejected,),
            input_size=len(value),
        )
        if isinstance(result, VerifiedRequest):
            assert result.key_id == KEY_ID


@fuzz_settings(share=2)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([*FIELDS, "signature-input", "SIGNATURE", "Host"]),
            fuzz_bytes([v.encode("latin-1") for v in SIGNED.values()], raw_max_size=64).map(
                _latin1
            ),
        ),
        max_size=5,
    ),
    fuzz_bytes([BODY, b""], raw_max_size=64),
    fuzz_text([URL, "https://doorbell.local:8443/clips"], raw_max_size=64),
    st.sampled_from(["POST", "GET", "post", "DELETE", "", "P\nST"]),
)
def test_signed_request_parts(
    extra: list[tuple[str, str]], body: bytes, url: str, method: str
) -> None:
    # Repeated fields reach the verifier as several lines, as a multidict would hold them.
    lines = list(SIGNED.items()) + extra
    headers = _Lines(lines)
    parse_or_refuse(lambda: _verify(method, url, headers, body), (SignatureRejected,))


class _Lines:
    """A header multidict as the verifier reads one: ``items()`` gives every line."""

    def __init__(self, lines: list[tuple[str, str]]) -> None:
        self._lines = lines

    def items(self) -> list[tuple[str, str]]:
        return list(self._lines)

    def get(self, name: str, default: Any = None) -> Any:
        for key, value in self._lines:
            if key.lower() == name.lower():
                return value
        return default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return str(value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Any:
        return iter(key for key, _ in self._lines)

    def getall(self, name: str) -> list[str]:
        return [v for k, v in self._lines if k.lower() == name.lower()]


_ITEMS = st.one_of(
    st.sampled_from(['"@method"', '"@target-uri"', '"content-digest"', '"@authority"']),
    st.sampled_from(
        ["1", "-1", "1.5", "?1", ":AAAA:", "token", '"x";p=1', '"@query-param";name="a"']
    ),
)


@fuzz_settings(share=3)
@given(
    st.lists(_ITEMS, max_size=5),
    st.lists(
        st.sampled_from(
            [
                f"created={NOW}",
                f'keyid="{KEY_ID}"',
                'nonce="n0nce-0123456789abcdef"',
                f'tag="{DEVICE_ID}"',
                'alg="ed25519"',
                "created=1.5",
                "created=?1",
                'created="1"',
                "keyid=:AAAA:",
                "expires=1",
                f"created={NOW * 10**9}",
                "created=-1",
            ]
        ),
        max_size=7,
    ),
    st.sampled_from(["doorward", "other", "doorward=1, doorward"]),
)
def test_signature_input_structure(items: list[str], params: list[str], label: str) -> None:
    value = f"{label}=({' '.join(items)})" + "".join(f";{p}" for p in params)
    headers = {**SIGNED, "Signature-Input": value}
    parse_or_refuse(lambda: _verify("POST", URL, headers, BODY), (SignatureRejected,))


# -- zeroconf TXT records -----------------------------------------------------------------------

TXT = DiscoveredDevice(DEVICE_ID, "Front door", 8443, "open", b64url(bytes(32))).txt()
_TXT_BYTES = {k.encode(): v.encode() for k, v in TXT.items()}


@fuzz_settings(share=3)
@given(
    st.dictionaries(
        st.sampled_from([*_TXT_BYTES, b"x", b"\xff", b""]),
        st.one_of(
            st.none(),
            fuzz_bytes(list(_TXT_BYTES.values()), raw_max_size=255).map(lambda b: b[:255]),
        ),
        max_size=8,
    ),
    st.one_of(st.none(), st.integers(min_value=0, max_value=70000)),
)
def test_txt_record(changes: dict[bytes, bytes | None], srv_port: int | None) -> None:
    properties = {**_TXT_BYTES, **changes}
    result = parse_or_refuse(
        lambda: DiscoveredDevice.from_txt(properties, srv_port=srv_port), (DiscoveryError,)
    )
    if isinstance(result, DiscoveredDevice):
        assert {k.encode(): v.encode() for k, v in result.txt().items()} == properties
