"""Re-heading: new recipients, same payload, fresh MAC; refusals; the streaming Encryptor."""

from __future__ import annotations

import hashlib
import io
import os
import re

import pytest

from crypto import age
from crypto.errors import AgeError, HeaderError, HeaderMacError, NoIdentityMatched, PayloadError

DATA = os.urandom(2 * age.CHUNK_SIZE + 17)
_Kind = type[age.X25519Identity] | type[age.HybridIdentity]


def _file(recipients: list[age.Recipient], data: bytes = DATA) -> tuple[bytes, bytes]:
    return age.split_header(age.encrypt_bytes(recipients, data))


@pytest.mark.parametrize(
    ("owner_kind", "requester_kind"),
    [
        (age.HybridIdentity, age.HybridIdentity),
        (age.HybridIdentity, age.X25519Identity),
        (age.X25519Identity, age.HybridIdentity),
        (age.X25519Identity, age.X25519Identity),
    ],
)
def test_reheader_moves_access(owner_kind: _Kind, requester_kind: _Kind) -> None:
    owner, requester = owner_kind.generate(), requester_kind.generate()
    header, payload = _file([owner.recipient()])
    new_header = age.reheader(header, [owner], [requester.recipient()])
    assert age.stanza_types(new_header) == (requester.stanza_type,)
    released = new_header + payload
    assert age.decrypt_bytes([requester], released) == DATA
    with pytest.raises(NoIdentityMatched):
        age.decrypt_bytes([owner], released)
    # The payload, and so its hash, is untouched.
    assert age.payload_sha256(released) == hashlib.sha256(payload).digest()


def test_reheader_with_several_owner_stanzas_and_identities() -> None:
    owners = [age.HybridIdentity.generate() for _ in range(3)]
    requester = age.HybridIdentity.generate()
    header, payload = _file([o.recipient() for o in owners])
    assert age.stanza_types(header) == ("mlkem768x25519",) * 3
    stranger = age.HybridIdentity.generate()
    new_header = age.reheader(header, [stranger, owners[2]], [requester.recipient()])
    assert age.decrypt_bytes([requester], new_header + payload) == DATA


def test_reheader_refuses_wrong_identity() -> None:
    header, _ = _file([age.X25519Identity.generate().recipient()])
    with pytest.raises(NoIdentityMatched) as info:
        age.reheader(
            header, [age.X25519Identity.generate()], [age.X25519Identity.generate().recipient()]
        )
    assert str(info.value) == (
        "none of the 1 identities opens this file (stanza types: X25519); "
        "is it encrypted to a different key?"
    )


def test_reheader_refuses_wrong_mac() -> None:
    owner = age.X25519Identity.generate()
    header, _ = _file([owner.recipient()])
    mac = header[-44:-1]
    forged = header[:-44] + (b"B" if mac[:1] == b"A" else b"A") + mac[1:] + b"\n"
    with pytest.raises(HeaderMacError) as info:
        age.reheader(forged, [owner], [age.X25519Identity.generate().recipient()])
    assert str(info.value) == "the header MAC is wrong: the header was altered or corrupted"


def test_reheader_refuses_a_header_with_payload_attached() -> None:
    owner = age.X25519Identity.generate()
    header, payload = _file([owner.recipient()])
    with pytest.raises(HeaderError, match="unexpected data after the header MAC line"):
        age.reheader(header + payload, [owner], [owner.recipient()])


def test_refuses_to_downgrade_hybrid_files() -> None:
    pq = age.HybridIdentity.generate().recipient()
    classic = age.X25519Identity.generate().recipient()
    expected = (
        "refusing to mix post-quantum (mlkem768x25519) and classic recipients: the file would "
        "be only as strong as the classic one; use hybrid recipients for everyone"
    )
    with pytest.raises(AgeError) as info:
        age.encrypt_bytes([pq, classic], b"x")
    assert str(info.value) == expected
    owner = age.HybridIdentity.generate()
    header, _ = _file([owner.recipient()])
    with pytest.raises(AgeError) as info:
        age.reheader(header, [owner], [pq, classic])
    assert str(info.value) == expected


def test_scrypt_must_be_alone_and_recipients_required() -> None:
    with pytest.raises(AgeError) as info:
        age.encrypt_bytes(
            [age.ScryptRecipient(b"pw", work_factor=10), age.X25519Identity.generate().recipient()],
            b"x",
        )
    assert str(info.value) == "a passphrase (scrypt) recipient must be the file's only recipient"
    with pytest.raises(AgeError) as info:
        age.encrypt_bytes([], b"x")
    assert str(info.value) == "no recipients given: pass at least one age1… or age1pq1… recipient"


def test_scrypt_round_trip_and_wrong_passphrase() -> None:
    data = age.encrypt_bytes([age.ScryptRecipient(b"pw", work_factor=10)], b"hello")
    assert age.decrypt_bytes([age.ScryptIdentity(b"pw")], data) == b"hello"
    with pytest.raises(NoIdentityMatched):
        age.decrypt_bytes([age.ScryptIdentity(b"other")], data)
    with pytest.raises(HeaderError) as info:
        age.decrypt_bytes([age.ScryptIdentity(b"pw", max_work_factor=9)], data)
    assert str(info.value) == "scrypt work factor 10 is above the limit 9"


def test_encryptor_streams_and_tracks_the_payload() -> None:
    recipient_identity = age.HybridIdentity.generate()
    out = io.BytesIO()
    pieces = [DATA[i : i + 1000] for i in range(0, len(DATA), 1000)]
    with age.Encryptor(out, [recipient_identity.recipient()]) as enc:
        for piece in pieces:
            enc.write(bytearray(piece))  # mutable input is copied, not held
    header, payload = age.split_header(out.getvalue())
    assert enc.header == header
    assert enc.payload_sha256 == hashlib.sha256(payload).digest()
    assert enc.payload_size == len(payload) == 16 + len(DATA) + 3 * 16
    assert enc.plaintext_size == len(DATA)
    assert age.decrypt_bytes([recipient_identity], out.getvalue()) == DATA


@pytest.mark.parametrize("source", ["bytes", "file", "iterable"])
def test_encrypt_sources(source: str) -> None:
    identity = age.X25519Identity.generate()
    data: object = {
        "bytes": DATA,
        "file": io.BytesIO(DATA),
        "iterable": iter([DATA[:5], b"", DATA[5:]]),
    }[source]
    out = io.BytesIO()
    enc = age.encrypt([identity.recipient()], data, out)  # type: ignore[arg-type]
    assert age.decrypt_bytes([identity], out.getvalue()) == DATA
    assert enc.payload_sha256 == age.payload_sha256(out.getvalue())


def test_armored_encryptor_output() -> None:
    identity = age.X25519Identity.generate()
    out = io.BytesIO()
    enc = age.encrypt([identity.recipient()], DATA, out, armor=True)
    text = out.getvalue()
    assert text.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----\n")
    assert text.endswith(b"-----END AGE ENCRYPTED FILE-----\n")
    binary = age.dearmor(text)
    assert age.payload_sha256(binary) == enc.payload_sha256
    assert age.decrypt_bytes([identity], text) == DATA


def test_encryptor_error_inside_with_leaves_an_invalid_file() -> None:
    identity = age.X25519Identity.generate()
    out = io.BytesIO()
    enc = age.Encryptor(out, [identity.recipient()])

    def failing_muxer() -> None:
        with enc:
            enc.write(DATA)
            raise RuntimeError("muxer failed")

    with pytest.raises(RuntimeError):
        failing_muxer()
    with pytest.raises(ValueError, match="payload_sha256 is known only after close"):
        _ = enc.payload_sha256
    released = io.BytesIO()
    with pytest.raises(PayloadError):
        age.decrypt([identity], out.getvalue(), released)
    # The full chunks that were sealed are released; the file still cannot pass as complete.
    assert released.getvalue() == DATA[: 2 * age.CHUNK_SIZE]


def test_header_helpers() -> None:
    identity = age.X25519Identity.generate()
    data = age.encrypt_bytes([identity.recipient()], b"abc")
    src = io.BytesIO(data)
    header = age.read_header(src)
    assert src.read() == data[len(header) :]
    assert age.split_header(data) == (header, data[len(header) :])
    assert len(data) - len(header) == 16 + 3 + 16


def test_encryptor_copies_mutable_input() -> None:
    identity = age.X25519Identity.generate()
    out = io.BytesIO()
    buffer = bytearray(b"a" * 1000)
    with age.Encryptor(out, [identity.recipient()]) as enc:
        enc.write(buffer)
        buffer[:] = b"b" * 1000  # a caller reusing its buffer must not change what was written
        enc.write(memoryview(bytes(10)))
    assert age.decrypt_bytes([identity], out.getvalue()) == b"a" * 1000 + bytes(10)


def _rewrap(
    header: bytes, identities: list[age.Identity], recipient: age.Recipient, payload: bytes
) -> bytes:
    """``reheader_for_payload`` given the whole payload, as the phone reads it."""
    return age.reheader_for_payload(
        header,
        identities,
        [recipient],
        payload_head=payload[: age.PAYLOAD_HEAD_SIZE],
        payload_size=len(payload),
    )


@pytest.mark.parametrize(
    "size",
    [0, 1, age.CHUNK_SIZE - 1, age.CHUNK_SIZE, age.CHUNK_SIZE + 1, 2 * age.CHUNK_SIZE + 17],
    ids=["empty", "one-byte", "under-a-chunk", "one-full-chunk", "a-chunk-and-a-byte", "three"],
)
def test_reheader_for_payload_opens_its_own_payload(size: int) -> None:
    owner, requester = age.X25519Identity.generate(), age.HybridIdentity.generate()
    data = os.urandom(size)
    header, payload = _file([owner.recipient()], data)
    new_header = _rewrap(header, [owner], requester.recipient(), payload)
    assert age.decrypt_bytes([requester], new_header + payload) == data


@pytest.mark.parametrize("size", [100, age.CHUNK_SIZE, 2 * age.CHUNK_SIZE + 17])
def test_reheader_for_payload_refuses_another_files_payload(size: int) -> None:
    owner = age.X25519Identity.generate()
    header_a, _ = _file([owner.recipient()], os.urandom(size))
    _, payload_b = _file([owner.recipient()], os.urandom(size))
    with pytest.raises(PayloadError) as info:
        _rewrap(header_a, [owner], owner.recipient(), payload_b)
    assert str(info.value) == "payload chunk 0 failed authentication"


def test_reheader_for_payload_checks_the_chunk_position() -> None:
    owner = age.X25519Identity.generate()
    header, payload = _file([owner.recipient()], os.urandom(age.CHUNK_SIZE))  # one final chunk
    head = payload[: age.PAYLOAD_HEAD_SIZE]
    # Claimed to be followed by more data, the final chunk is not a valid first chunk.
    with pytest.raises(PayloadError, match="chunk 0 failed authentication"):
        age.reheader_for_payload(
            header, [owner], [owner.recipient()], payload_head=head, payload_size=len(head) + 1
        )
    header, payload = _file([owner.recipient()])  # a non-final first chunk
    with pytest.raises(PayloadError, match="chunk 0 failed authentication"):
        age.reheader_for_payload(
            header,
            [owner],
            [owner.recipient()],
            payload_head=payload[: age.PAYLOAD_HEAD_SIZE],
            payload_size=age.PAYLOAD_HEAD_SIZE,
        )
    with pytest.raises(PayloadError) as info:
        age.reheader_for_payload(
            header, [owner], [owner.recipient()], payload_head=payload[:15], payload_size=15
        )
    assert str(info.value) == "payload is 15 bytes: it ends before its 16-byte nonce"
    with pytest.raises(PayloadError) as info:
        age.reheader_for_payload(
            header, [owner], [owner.recipient()], payload_head=payload[:30], payload_size=30
        )
    assert str(info.value) == "payload chunk 0 is 14 bytes; a final chunk is 16 to 65552"
    expected = (
        "payload_head must be the first min(payload_size, 65568) bytes of the payload, got 30 of 99"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        age.reheader_for_payload(
            header, [owner], [owner.recipient()], payload_head=payload[:30], payload_size=99
        )


def test_reheader_for_payload_still_checks_the_header() -> None:
    owner = age.X25519Identity.generate()
    header, payload = _file([owner.recipient()])
    with pytest.raises(NoIdentityMatched):
        _rewrap(header, [age.X25519Identity.generate()], owner.recipient(), payload)
