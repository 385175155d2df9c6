"""Fuzz the age reader: headers, whole files (binary and armored), armor, re-heading, key strings.

Every input either parses or is refused with the error the function documents (``HeaderError``
for headers and armor, ``AgeError`` for files, ``KeyFileError``/``UnsupportedRecipient`` for key
strings); a header that parses re-encodes to exactly its bytes (age headers are canonical).
"""

from __future__ import annotations

import io

import pytest

from crypto import age
from crypto.errors import AgeError, CryptoError, HeaderError
from tests.fuzz.kit import bytes_target, parse_or_refuse, text_target

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.timeout(120)]

X25519 = age.X25519Identity.generate()
HYBRID = age.HybridIdentity.generate()
PASSPHRASE = b"fuzzing passphrase"
SCRYPT = age.ScryptIdentity(PASSPHRASE, max_work_factor=4)


def _files() -> list[bytes]:
    files = [
        age.encrypt_bytes([X25519.recipient()], b""),
        age.encrypt_bytes([X25519.recipient()], b"a short plaintext"),
        age.encrypt_bytes([X25519.recipient(), age.X25519Identity.generate().recipient()], b"x"),
        age.encrypt_bytes([HYBRID.recipient()], b"hybrid"),
        age.encrypt_bytes([age.ScryptRecipient(PASSPHRASE, work_factor=2)], b"scrypt"),
        # Two STREAM chunks: the second is the final one.
        age.encrypt_bytes([X25519.recipient()], bytes(age.CHUNK_SIZE + 7)),
    ]
    return files


FILES = _files()
HEADERS = [age.split_header(f)[0] for f in FILES]
ARMORED = [age.armor(f) for f in FILES[:3]]
KEY_STRINGS = [
    str(X25519.recipient()),
    str(HYBRID.recipient())[:80],
    X25519.to_secret_string(),
    HYBRID.to_secret_string(),
    f"# created: now\n# public key: {X25519.recipient()}\n{X25519.to_secret_string()}\n",
]


@bytes_target(HEADERS, share=4)
def test_header_parse(data: bytes) -> None:
    result = parse_or_refuse(lambda: age.Header.parse(data), (HeaderError,), input_size=len(data))
    if isinstance(result, age.Header):
        assert bytes(result) == data


@bytes_target(FILES[:5], share=2)
def test_read_header_stops_at_the_mac_line(data: bytes) -> None:
    src = io.BytesIO(data)
    result = parse_or_refuse(lambda: age.read_header(src), (HeaderError,), input_size=len(data))
    if isinstance(result, bytes):
        assert data.startswith(result)
        assert src.tell() == len(result)


@bytes_target(FILES + ARMORED, share=2)
def test_decrypt(data: bytes) -> None:
    out = io.BytesIO()
    result = parse_or_refuse(
        lambda: age.decrypt([X25519, HYBRID, SCRYPT], data, out), (AgeError,), input_size=len(data)
    )
    if isinstance(result, int):
        assert result == len(out.getvalue())


@bytes_target(ARMORED, share=3)
def test_dearmor(data: bytes) -> None:
    result = parse_or_refuse(lambda: age.dearmor(data), (age.ArmorError,), input_size=len(data))
    if isinstance(result, bytes):
        assert age.dearmor(age.armor(result)) == result


@bytes_target(HEADERS, share=2)
def test_reheader(header: bytes) -> None:
    new_recipient = age.X25519Identity.generate().recipient()
    result = parse_or_refuse(
        lambda: age.reheader(header, [X25519, SCRYPT], [new_recipient]),
        (AgeError,),
        input_size=len(header),
    )
    if isinstance(result, bytes):
        assert age.stanza_types(result) == ("X25519",)


@text_target(KEY_STRINGS, share=3)
def test_key_strings(text: str) -> None:
    for parse in (age.parse_recipient, age.parse_identity, age.parse_identities):
        result = parse_or_refuse(lambda p=parse: p(text), (CryptoError,), input_size=len(text))
        if parse is not age.parse_recipient and isinstance(result, CryptoError):
            # An identity string is a secret: its errors never repeat its key material (what
            # follows the AGE-SECRET-KEY-1 or -PQ-1 prefix, which the message may name).
            for line in text.splitlines():
                for prefix in ("AGE-SECRET-KEY-1", "AGE-SECRET-KEY-PQ-1"):
                    material = line.strip().removeprefix(prefix)
                    if line.strip().startswith(prefix) and len(material) >= 8:
                        assert material not in str(result)
