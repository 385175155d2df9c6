"""Key strings exactly as age writes them, secrets kept out of reprs, and exact error texts."""

from __future__ import annotations

import hashlib

import pytest

from crypto import age
from crypto.age import _bech32
from crypto.errors import HeaderError, KeyFileError, UnsupportedRecipient

# Examples from the age spec (C2SP age.md).
SPEC_X25519_IDENTITY = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
SPEC_X25519_RECIPIENT = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"
SPEC_PQ_IDENTITY = "AGE-SECRET-KEY-PQ-1XX76JRALNLXDMEW0CRK45QMCCH4X06SE84UN3VPM33W6HWDX0H3SK3ZQFR"
# The spec's 1,959-character age1pq1… recipient for that identity, pinned by its SHA-256.
SPEC_PQ_RECIPIENT_SHA256 = "a091dd7e0ee9d62b75173dcc98441a0424baa941e66a8776e570a4ae60ff61ea"


def test_public_api_is_pinned() -> None:
    assert sorted(age.__all__) == sorted(
        [
            "CHUNK_SIZE", "PAYLOAD_HEAD_SIZE", "ArmorError", "Encryptor", "Header",
            "HybridIdentity", "HybridRecipient", "Identity", "Recipient", "ScryptIdentity",
            "ScryptRecipient", "Stanza", "Unwrapper", "X25519Identity", "X25519Recipient", "armor",
            "dearmor", "decrypt", "decrypt_bytes", "encrypt", "encrypt_bytes", "parse_identities",
            "parse_identity", "parse_recipient", "payload_sha256", "read_header", "reheader",
            "reheader_for_payload", "split_header", "stanza_types",
        ]
    )  # fmt: skip


def test_spec_x25519_example() -> None:
    identity = age.parse_identity(SPEC_X25519_IDENTITY)
    assert isinstance(identity, age.X25519Identity)
    assert str(identity.recipient()) == SPEC_X25519_RECIPIENT
    assert identity.to_secret_string() == SPEC_X25519_IDENTITY
    assert age.parse_recipient(SPEC_X25519_RECIPIENT) == identity.recipient()


def test_spec_hybrid_example() -> None:
    identity = age.parse_identity(SPEC_PQ_IDENTITY)
    assert isinstance(identity, age.HybridIdentity)
    recipient = str(identity.recipient())
    assert recipient.startswith("age1pq1x34nzsvr0rxjsgdn8zgyhfe8j7")
    assert len(recipient) == 1959
    assert hashlib.sha256(recipient.encode()).hexdigest() == SPEC_PQ_RECIPIENT_SHA256
    assert identity.to_secret_string() == SPEC_PQ_IDENTITY
    parsed = age.parse_recipient(recipient)
    assert isinstance(parsed, age.HybridRecipient)
    assert parsed.stanza_type == "mlkem768x25519"
    assert str(parsed) == recipient


@pytest.mark.parametrize("kind", [age.X25519Identity, age.HybridIdentity])
def test_generated_keys_round_trip_through_strings(kind: type[age.Identity]) -> None:
    identity = kind.generate()  # type: ignore[attr-defined]
    secret = identity.to_secret_string()
    again = age.parse_identity(secret)
    assert str(again.recipient()) == str(identity.recipient())
    assert age.parse_recipient(str(identity.recipient())) == identity.recipient()
    # Another key is another recipient.
    assert str(kind.generate().recipient()) != str(identity.recipient())  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", [age.X25519Identity, age.HybridIdentity])
def test_reprs_never_show_secrets(kind: type[age.Identity]) -> None:
    identity = kind.generate()  # type: ignore[attr-defined]
    secret = identity.to_secret_string()
    body = secret.split("1", 1)[1]
    for text in (repr(identity), str(identity), repr([identity])):
        assert body not in text
        assert body.lower() not in text
    assert repr(identity).startswith(f"{kind.__name__}(recipient=")


def test_scrypt_repr_hides_passphrase() -> None:
    recipient = age.ScryptRecipient(b"correct horse", work_factor=10)
    identity = age.ScryptIdentity(b"correct horse")
    for text in (repr(recipient), str(recipient), repr(identity)):
        assert "correct horse" not in text
    assert str(recipient) == "scrypt passphrase (work factor 10)"


def test_malformed_recipient_is_quoted() -> None:
    bad = SPEC_X25519_RECIPIENT[:-1] + "q"
    with pytest.raises(KeyFileError) as info:
        age.parse_recipient(bad)
    assert str(info.value) == f"malformed X25519 recipient {bad!r}: bad checksum"


def test_unsupported_recipient() -> None:
    with pytest.raises(UnsupportedRecipient) as info:
        age.parse_recipient("ssh-ed25519 AAAAC3Nza")
    assert str(info.value) == (
        "unsupported recipient 'ssh-ed25519 AAAAC3Nza': expected an age1… (X25519) or "
        "age1pq1… (hybrid) key"
    )


def test_malformed_identity_is_never_echoed() -> None:
    bad = SPEC_X25519_IDENTITY[:-1] + "Q"
    with pytest.raises(KeyFileError) as info:
        age.parse_identity(bad)
    assert str(info.value) == "malformed X25519 identity (AGE-SECRET-KEY-1…): bad checksum"
    assert bad[20:] not in str(info.value)
    with pytest.raises(KeyFileError) as info:
        age.parse_identity(SPEC_X25519_IDENTITY.lower())
    assert "unrecognized identity" in str(info.value)
    assert SPEC_X25519_IDENTITY.lower()[16:] not in str(info.value)


def test_identity_file_with_comments() -> None:
    text = (
        "# created: 2026-11-26T10:00:00Z\n"
        f"# public key: {SPEC_X25519_RECIPIENT}\n"
        f"{SPEC_X25519_IDENTITY}\n\n"
        f"{SPEC_PQ_IDENTITY}\n"
    )
    identities = age.parse_identities(text)
    assert [type(i) for i in identities] == [age.X25519Identity, age.HybridIdentity]


def test_identity_file_errors_name_the_line() -> None:
    with pytest.raises(KeyFileError) as info:
        age.parse_identities(f"# key\n{SPEC_X25519_IDENTITY}\nAGE-SECRET-KEY-1NOPE\n")
    assert str(info.value).startswith("identity file line 3: malformed X25519 identity")
    with pytest.raises(KeyFileError) as info:
        age.parse_identities("# nothing here\n\n")
    assert str(info.value) == "identity file holds no identities (AGE-SECRET-KEY-…)"


def test_bech32_rules() -> None:
    assert _bech32.decode(SPEC_X25519_RECIPIENT.upper())[0] == "age"
    mixed = "Age" + SPEC_X25519_RECIPIENT[3:]
    with pytest.raises(ValueError, match="mixed case"):
        _bech32.decode(mixed)
    with pytest.raises(ValueError, match="invalid character in data"):
        _bech32.decode("age1" + "b" * 58)  # 'b' is not in the Bech32 alphabet
    for size in (0, 1, 31, 32, 33, 1216):
        data = bytes(range(256)) * 5
        assert _bech32.decode(_bech32.encode("age", data[:size])) == ("age", data[:size])


def test_stanza_and_header_round_trip() -> None:
    stanza = age.Stanza("X25519", ("abc",), bytes(48))  # 48 bytes: one full 64-column line
    assert bytes(stanza) == b"-> X25519 abc\n" + b"A" * 64 + b"\n\n"
    header = age.Header((stanza, age.Stanza("grease", (), b"")), bytes(32))
    encoded = bytes(header)
    assert encoded.startswith(b"age-encryption.org/v1\n-> X25519 abc\n")
    assert age.Header.parse(encoded) == header
    assert age.stanza_types(encoded) == ("X25519", "grease")
    with pytest.raises(ValueError, match="stanza arguments must be non-empty printable ASCII"):
        age.Stanza("X25519", ("",), b"")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"", "header ends before its MAC line: the file is truncated or not age"),
        (b"age-encryption.org/v2\n", "unsupported age version b'v2'; only age-encryption.org/v1 is supported"),
        (b"hello\n", "not an age file: the first line is not age-encryption.org/v1"),
        (b"age-encryption.org/v1\n--- " + b"A" * 43 + b"\n", "header has no recipient stanzas"),
        (b"age-encryption.org/v1\n-> X25519\nAAAA\n--- x\n", "malformed MAC line: expected '--- ' and 43 base64 characters"),
        (b"age-encryption.org/v1\n-> X25519  a\n\n", "malformed stanza: empty argument or non-printable character"),
        (b"age-encryption.org/v1\n-> a\nAAA=\n", "malformed stanza: body is not base64 or the final body line is missing"),
        (b"age-encryption.org/v1\n-> a\nAB\n", "stanza body is not canonical base64 (stray low bits)"),
        (b"age-encryption.org/v1\n-> a\n\n--- " + b"A" * 43 + b"\nX", "unexpected data after the header MAC line"),
        (b"age-encryption.org/v1\n+> a\n", "malformed header line: expected a stanza ('-> ') or MAC ('---')"),
    ],
)  # fmt: skip
def test_header_errors_are_exact(header: bytes, message: str) -> None:
    with pytest.raises(HeaderError) as info:
        age.Header.parse(header)
    assert str(info.value) == message


def test_armor_round_trip_and_errors() -> None:
    for size in (0, 1, 47, 48, 49, 1000):
        data = bytes(range(256)) * 4
        armored = age.armor(data[:size])
        assert age.dearmor(armored) == data[:size]
        assert age.dearmor(b"\n  " + armored.replace(b"\n", b"\r\n") + b"\t\n") == data[:size]
        lines = armored.split(b"\n")
        assert all(len(line) <= 64 for line in lines)
    with pytest.raises(age.ArmorError) as info:
        age.dearmor(b"x" + age.armor(b"abc"))
    assert str(info.value) == "armor must start with '-----BEGIN AGE ENCRYPTED FILE-----'"
    with pytest.raises(age.ArmorError) as info:
        age.dearmor(age.armor(b"ab").replace(b"YWI=", b"YWJ="))
    assert str(info.value) == "armor body is not canonical base64"
