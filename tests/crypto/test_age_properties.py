"""Property tests: round trips around chunk boundaries; any flipped byte or cut is detected."""

from __future__ import annotations

import io
import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto import age
from crypto.errors import AgeError

CHUNK = age.CHUNK_SIZE
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 1]

# Key generation is the slow part, so a small pool of keys is shared by all examples.
X25519_KEYS = [age.X25519Identity.generate() for _ in range(3)]
HYBRID_KEYS = [age.HybridIdentity.generate() for _ in range(3)]
BLOB = os.urandom(3 * CHUNK + 1)

_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def key_sets(draw: st.DrawFn) -> list[age.Identity]:
    pools: list[list[age.Identity]] = [list(X25519_KEYS), list(HYBRID_KEYS)]
    pool = draw(st.sampled_from(pools))
    count = draw(st.integers(min_value=1, max_value=3))
    return draw(st.permutations(pool))[:count]


@_SETTINGS
@given(
    size=st.sampled_from(SIZES),
    keys=key_sets(),
    cuts=st.lists(st.integers(min_value=0, max_value=3 * CHUNK + 1), max_size=4),
    armored=st.booleans(),
)
def test_round_trip(size: int, keys: list[age.Identity], cuts: list[int], armored: bool) -> None:
    data = BLOB[:size]
    out = io.BytesIO()
    with age.Encryptor(out, [k.recipient() for k in keys], armor=armored) as enc:
        bounds = sorted({0, size, *(c for c in cuts if c <= size)})
        for start, end in itertools.pairwise(bounds):
            enc.write(data[start:end])
    for key in keys:
        assert age.decrypt_bytes([key], out.getvalue()) == data
    chunks = max(1, -(-size // CHUNK))
    assert enc.payload_size == 16 + size + 16 * chunks


def test_round_trip_several_mib() -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)
    key = HYBRID_KEYS[0]
    sealed = age.encrypt_bytes([key.recipient()], data)
    assert age.decrypt_bytes([key], sealed) == data


SAMPLE = BLOB[: 2 * CHUNK + 100]
SEALED = age.encrypt_bytes([X25519_KEYS[0].recipient()], SAMPLE)
HEADER_SIZE = len(age.split_header(SEALED)[0])


def _released_on_error(data: bytes) -> bytes:
    out = io.BytesIO()
    with pytest.raises(AgeError):
        age.decrypt([X25519_KEYS[0]], data, out)
    return out.getvalue()


def _assert_only_whole_authenticated_chunks(released: bytes, damaged_at: int) -> None:
    assert len(released) % CHUNK == 0
    assert released == SAMPLE[: len(released)]
    # Nothing from the damaged chunk (or after it) is released.
    payload_offset = damaged_at - HEADER_SIZE - 16
    damaged_chunk = payload_offset // (CHUNK + 16) if payload_offset >= 0 else -1
    assert len(released) // CHUNK <= max(damaged_chunk, 0)


@settings(max_examples=80, deadline=None)
@given(
    position=st.one_of(
        st.integers(min_value=0, max_value=HEADER_SIZE + 15),  # header and payload nonce
        st.integers(min_value=0, max_value=len(SEALED) - 1),
    ),
    xor=st.integers(1, 255),
)
def test_any_flipped_byte_is_detected(position: int, xor: int) -> None:
    damaged = bytearray(SEALED)
    damaged[position] ^= xor
    released = _released_on_error(bytes(damaged))
    _assert_only_whole_authenticated_chunks(released, position)


@_SETTINGS
@given(position=st.integers(min_value=0, max_value=len(SEALED) - 1))
def test_any_truncation_is_detected(position: int) -> None:
    released = _released_on_error(SEALED[:position])
    _assert_only_whole_authenticated_chunks(released, position)


@pytest.mark.parametrize("position", [HEADER_SIZE - 2, HEADER_SIZE + 5, len(SEALED) - 1])
def test_flips_in_header_nonce_and_last_tag(position: int) -> None:
    damaged = bytearray(SEALED)
    damaged[position] ^= 1
    _assert_only_whole_authenticated_chunks(_released_on_error(bytes(damaged)), position)


def test_appended_bytes_are_detected() -> None:
    out = io.BytesIO()
    # A short final chunk with a byte appended no longer authenticates.
    with pytest.raises(AgeError, match="payload chunk 2 failed authentication"):
        age.decrypt([X25519_KEYS[0]], SEALED + b"\x00", out)
    assert out.getvalue() == SAMPLE[: 2 * CHUNK]
    # A full final chunk authenticates as final, and then the extra byte is refused.
    data = BLOB[: 2 * CHUNK]
    sealed = age.encrypt_bytes([X25519_KEYS[0].recipient()], data)
    out = io.BytesIO()
    with pytest.raises(AgeError, match="payload has data after its final chunk"):
        age.decrypt([X25519_KEYS[0]], sealed + b"\x00", out)
    assert out.getvalue() == data
