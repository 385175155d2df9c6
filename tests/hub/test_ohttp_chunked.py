"""Chunked Oblivious HTTP (draft-ietf-ohai-chunked-ohttp-08): the draft's example byte for byte,
round trips, and what a relay that alters, drops, reorders or cuts chunks gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hub.wire import ohttp, ohttp_chunked
from hub.wire.ohttp import AEAD_CHACHA20_POLY1305, KDF_HKDF_SHA256, GatewayKey, KeyConfig
from hub.wire.ohttp_chunked import StreamBroken

V = json.loads((Path(__file__).parent / "data" / "chunked_ohttp_vectors.json").read_text())


def h(name: str) -> bytes:
    return bytes.fromhex(V[name])


KEY = GatewayKey.from_private_bytes(1, h("skR"), ohttp.DEFAULT_ALGORITHMS)


def _split(data: bytes, sizes: list[int]) -> list[bytes]:
    parts, pos = [], 0
    for size in sizes:
        parts.append(data[pos : pos + size])
        pos += size
    return [*parts, data[pos:]]


def test_the_drafts_example_request_byte_for_byte() -> None:
    config = KeyConfig.parse(h("key_config"))
    assert config == KEY.config()
    assert ohttp_chunked._info(h("encapsulated_request")[:7]) == h("info")
    parts = _split(h("request"), V["request_split"])
    assert parts[-1] == b""
    sealed, exchange = ohttp_chunked.encapsulate_request(
        config, parts, ephemeral_key=X25519PrivateKey.from_private_bytes(h("skE"))
    )
    assert sealed == h("encapsulated_request")
    assert exchange.enc == h("pkE")
    assert exchange.secret == h("exporter_secret")
    request, gateway = ohttp_chunked.decapsulate_request(KEY, h("encapsulated_request"))
    assert request == h("request")
    assert gateway.secret == h("exporter_secret")


def test_the_drafts_example_response_byte_for_byte() -> None:
    _, gateway = ohttp_chunked.decapsulate_request(KEY, h("encapsulated_request"))
    sealer = gateway.sealer(nonce=h("response_nonce"))
    parts = _split(h("response"), V["response_split"])
    out = sealer.nonce + b"".join(sealer.seal(p) for p in parts[:-1])
    out += sealer.seal(parts[-1], final=True)
    assert out == h("encapsulated_response")
    # The client opens it as one stream, and chunk by chunk as the relay carries it.
    client = ohttp_chunked.ChunkedClientExchange(gateway.algorithm, h("pkE"), h("exporter_secret"))
    assert client.opener().open_stream(h("encapsulated_response")) == h("response")
    opener = client.opener()
    nonce_bytes = len(h("response_nonce"))
    first = h("encapsulated_response")[: nonce_bytes + 18]
    assert opener.open_first(first) == (b"\x01", False)
    assert opener.open_chunk(h("encapsulated_response")[nonce_bytes + 18 : nonce_bytes + 37]) == (
        b"\x40\xc8",
        False,
    )
    assert opener.open_chunk(h("encapsulated_response")[nonce_bytes + 37 :]) == (b"", True)
    opener.finish()


def _exchange(
    algorithm: ohttp.SymmetricAlgorithm | None = None,
) -> tuple[ohttp_chunked.ChunkedClientExchange, ohttp_chunked.ChunkedGatewayExchange]:
    key = GatewayKey.generate(3)
    sealed, client = ohttp_chunked.encapsulate_request(
        key.config(), [b"GET /segments/x"], algorithm=algorithm
    )
    request, gateway = ohttp_chunked.decapsulate_request(key, sealed)
    assert request == b"GET /segments/x"
    return client, gateway


def _chunks(gateway: ohttp_chunked.ChunkedGatewayExchange, n: int) -> list[bytes]:
    sealer = gateway.sealer()
    out = [sealer.nonce + sealer.seal(b"chunk-0")]
    out += [sealer.seal(f"chunk-{i}".encode()) for i in range(1, n - 1)]
    out.append(sealer.seal(b"the end", final=True))
    return out


def _open_all(client: ohttp_chunked.ChunkedClientExchange, chunks: list[bytes]) -> bytes:
    opener = client.opener()
    out = bytearray(opener.open_first(chunks[0])[0])
    for chunk in chunks[1:]:
        out += opener.open_chunk(chunk)[0]
    opener.finish()
    return bytes(out)


@pytest.mark.parametrize(
    "algorithm", [None, ohttp.SymmetricAlgorithm(KDF_HKDF_SHA256, AEAD_CHACHA20_POLY1305)]
)
def test_round_trip_chunk_by_chunk(algorithm: ohttp.SymmetricAlgorithm | None) -> None:
    client, gateway = _exchange(algorithm)
    chunks = _chunks(gateway, 5)
    assert _open_all(client, chunks) == b"chunk-0chunk-1chunk-2chunk-3the end"
    assert client.opener().open_stream(b"".join(chunks)) == b"chunk-0chunk-1chunk-2chunk-3the end"


def test_truncation_is_detected() -> None:
    client, gateway = _exchange()
    chunks = _chunks(gateway, 4)
    with pytest.raises(StreamBroken, match="before its final chunk"):
        _open_all(client, chunks[:-1])
    with pytest.raises(StreamBroken, match="before its final chunk"):
        client.opener().open_stream(b"".join(chunks[:-1]))
    # A non-final chunk passed off as the last one (its frame rewritten to a zero length).
    forged_last = b"\x00" + chunks[2][2:]
    with pytest.raises(StreamBroken, match="chunk 2 does not open as the final chunk"):
        _open_all(client, [*chunks[:2], forged_last])


def test_tampering_reordering_and_splicing_are_detected() -> None:
    client, gateway = _exchange()
    chunks = _chunks(gateway, 4)
    altered = bytearray(chunks[1])
    altered[-1] ^= 1
    with pytest.raises(StreamBroken, match="chunk 1 does not open"):
        _open_all(client, [chunks[0], bytes(altered), *chunks[2:]])
    with pytest.raises(StreamBroken, match="chunk 1 does not open"):
        _open_all(client, [chunks[0], chunks[2], chunks[1], chunks[3]])
    with pytest.raises(StreamBroken, match="chunk 1 does not open"):
        _open_all(client, [chunks[0], *chunks[2:]])  # one dropped
    with pytest.raises(StreamBroken, match="chunk 2 does not open"):
        _open_all(client, [chunks[0], chunks[1], chunks[1], chunks[3]])  # one repeated
    # A chunk of another answer to the same key does not open either.
    _, other = _exchange()
    with pytest.raises(StreamBroken, match="chunk 1 does not open"):
        _open_all(client, [chunks[0], _chunks(other, 3)[1], *chunks[2:]])
    with pytest.raises(StreamBroken, match="says 99 bytes"):
        client.opener().open_first(chunks[0][:16] + b"\x40\x63" + chunks[0][18:])


def test_an_empty_non_final_chunk_is_refused_both_ways() -> None:
    client, gateway = _exchange()
    sealer = gateway.sealer()
    with pytest.raises(ohttp.OhttpError, match="non-final chunk must not be empty"):
        sealer.seal(b"")
    with pytest.raises(ohttp.OhttpError, match="non-final chunk must not be empty"):
        ohttp_chunked.encapsulate_request(GatewayKey.generate(1).config(), [b"", b"x"])
    # Sealed empty by someone who bypasses the sealer's rule: the opener refuses it.
    aead, base = ohttp._response_aead(gateway.algorithm, gateway.secret, gateway.enc, sealer.nonce)
    empty = aead.encrypt(ohttp_chunked._chunk_nonce(base, 0), b"", b"")
    with pytest.raises(StreamBroken, match="chunk 0 is empty"):
        client.opener().open_first(sealer.nonce + bytes([len(empty)]) + empty)


def test_counter_limits() -> None:
    client, gateway = _exchange()
    sealer = gateway.sealer(max_chunks=3)
    chunks = [sealer.nonce + sealer.seal(b"a"), sealer.seal(b"b"), sealer.seal(b"c")]
    with pytest.raises(ohttp.OhttpError, match="at most 3 chunks"):
        sealer.seal(b"d", final=True)
    opener = client.opener(max_chunks=2)
    opener.open_first(chunks[0])
    opener.open_chunk(chunks[1])
    with pytest.raises(StreamBroken, match="more than 2 chunks"):
        opener.open_chunk(chunks[2])
    with pytest.raises(ohttp.OhttpError, match="max_chunks must be 1 to 256"):
        gateway.sealer(max_chunks=256**12 + 1)
    assert ohttp_chunked.MAX_CHUNKS < 256**12
    # The counter is XORed into the low-order bytes of the base nonce, big-endian.
    base = bytes(12)
    assert ohttp_chunked._chunk_nonce(base, 1) == bytes(11) + b"\x01"
    assert ohttp_chunked._chunk_nonce(base, 256**12 - 1) == b"\xff" * 12
    sealer.finished = True
    with pytest.raises(ohttp.OhttpError, match="already finished"):
        sealer.seal(b"e")


def test_requests_that_do_not_open_are_refused() -> None:
    key = GatewayKey.generate(1)
    sealed, _ = ohttp_chunked.encapsulate_request(key.config(), [b"hello ", b"world"])
    assert ohttp_chunked.decapsulate_request(key, sealed)[0] == b"hello world"
    with pytest.raises(ohttp.DecapsulationFailed, match="cut short"):
        ohttp_chunked.decapsulate_request(key, sealed[:-1])
    with pytest.raises(ohttp.DecapsulationFailed):
        ohttp_chunked.decapsulate_request(GatewayKey.generate(1), sealed)
    with pytest.raises(ohttp.UnknownKey, match="key id 1, this gateway serves 2"):
        ohttp_chunked.decapsulate_request(GatewayKey.generate(2), sealed)
    # An RFC 9458 request is not a chunked one (another HPKE info): it does not open.
    plain, _ = ohttp.encapsulate_request(key.config(), b"hello world")
    with pytest.raises(ohttp.DecapsulationFailed):
        ohttp_chunked.decapsulate_request(key, plain)
