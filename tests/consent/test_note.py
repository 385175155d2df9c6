"""C2SP signed notes and tlog checkpoints: published vectors, round trips and exact refusals."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent._audit_errors import CheckpointError
from consent._note import (
    Checkpoint,
    NoteVerifier,
    note_key_id,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
)

VECTORS = json.loads((Path(__file__).parent / "data" / "c2sp_note_vectors.json").read_text())
ORIGIN = "doorward/abcdefghijklmnop"
ROOT = bytes(range(32))


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(32))


def verifier_for(key: Ed25519PrivateKey, name: str = ORIGIN) -> NoteVerifier:
    return NoteVerifier(name, key.public_key())


# --- published vectors ---


def test_spec_example_verifier_key_and_note() -> None:
    case = VECTORS["signed_note_example"]
    verifier = NoteVerifier.parse(case["verifier_key"])
    assert verifier.name == case["name"]
    assert verifier.key_id.hex() == case["key_id"]
    assert verifier.public_key.public_bytes_raw().hex() == case["public_key"]
    assert str(verifier) == case["verifier_key"]
    assert open_note(case["note"], verifier) == case["text"]
    assert open_note(case["note"].encode(), verifier) == case["text"]


def test_go_sumdb_note_is_reproduced_byte_for_byte() -> None:
    case = VECTORS["go_sumdb_note"]
    # PRIVATE+KEY+<name>+<id>+base64(0x01 || 32-byte seed); the base64 may itself hold '+'.
    _, _, name, key_hash, material = case["signer_key"].split("+", 4)
    seed = base64.b64decode(material)
    assert seed[0] == 1
    key = Ed25519PrivateKey.from_private_bytes(seed[1:])
    assert note_key_id(name, key.public_key()).hex() == key_hash
    assert sign_note(case["text"], name, key) == case["note"]
    verifier = NoteVerifier.parse(case["verifier_key"])
    assert open_note(case["note"], verifier) == case["text"]
    altered = case["note"].replace("cryptography", "cryptographY")
    with pytest.raises(
        CheckpointError,
        match=r"^note signature by PeterNeumann does not verify: the note was altered$",
    ):
        open_note(altered, verifier)


def test_spec_checkpoint_parses_and_its_unknown_signature_is_ignored(
    key: Ed25519PrivateKey,
) -> None:
    case = VECTORS["tlog_checkpoint_example"]
    text = case["note"].split("\n\n")[0] + "\n"
    checkpoint = Checkpoint.parse(text)
    assert checkpoint.origin == case["origin"]
    assert checkpoint.size == case["size"]
    assert checkpoint.root_hash == base64.b64decode(case["root_hash"])
    assert checkpoint.extensions == ()
    assert checkpoint.text() == text
    # Same name, another key (so another key ID): the signature is ignored, nothing else verifies.
    stranger = verifier_for(key, case["origin"])
    assert stranger.key_id.hex() != case["key_id"]
    with pytest.raises(
        CheckpointError,
        match=rf"^note is not signed by example.com/behind-the-sofa\+{stranger.key_id.hex()}$",
    ):
        open_checkpoint(case["note"], stranger)


# --- our checkpoints ---


def test_checkpoint_round_trip(key: Ed25519PrivateKey) -> None:
    checkpoint = Checkpoint(ORIGIN, 42, ROOT, ("ext one",))
    note = sign_checkpoint(checkpoint, key)
    body = f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\next one\n"
    assert note.startswith(body + "\n\u2014 " + ORIGIN + " ")
    assert open_checkpoint(note, verifier_for(key)) == checkpoint
    # The signature covers exactly the body.
    blob = base64.b64decode(note.rsplit(" ", 1)[1])
    assert blob[:4] == note_key_id(ORIGIN, key.public_key())
    key.public_key().verify(blob[4:], body.encode())


def test_empty_tree_checkpoint(key: Ed25519PrivateKey) -> None:
    checkpoint = Checkpoint(ORIGIN, 0, ROOT)
    assert open_checkpoint(sign_checkpoint(checkpoint, key), verifier_for(key)).size == 0


def test_extra_unknown_signatures_are_ignored(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
    note = sign_checkpoint(Checkpoint(ORIGIN, 3, ROOT), key)
    witness = sign_note(Checkpoint(ORIGIN, 3, ROOT).text(), "witness.example/w1", other)
    cosigned = note + witness.split("\n\n")[1]
    assert open_checkpoint(cosigned, verifier_for(key)).size == 3
    # Known name, unknown key ID (another key): ignored rather than failed.
    impostor = sign_note(Checkpoint(ORIGIN, 3, ROOT).text(), ORIGIN, other)
    both = impostor + note.split("\n\n")[1]
    assert open_checkpoint(both, verifier_for(key)).size == 3


def test_tampered_checkpoint_is_refused(key: Ed25519PrivateKey) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 12, ROOT), key)
    with pytest.raises(
        CheckpointError,
        match=rf"^note signature by {ORIGIN} does not verify: the note was altered$",
    ):
        open_checkpoint(note.replace("\n12\n", "\n13\n"), verifier_for(key))


def test_checkpoint_from_another_key_is_refused(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.from_private_bytes(bytes([9]) * 32)
    note = sign_checkpoint(Checkpoint(ORIGIN, 12, ROOT), other)
    expected = verifier_for(key)
    with pytest.raises(
        CheckpointError, match=rf"^note is not signed by {ORIGIN}\+{expected.key_id.hex()}$"
    ):
        open_checkpoint(note, expected)


def test_checkpoint_for_another_origin_is_refused(key: Ed25519PrivateKey) -> None:
    # Signed by the right key under the right name, but the body names another log.
    note = sign_note(Checkpoint("doorward/other", 1, ROOT).text(), ORIGIN, key)
    with pytest.raises(
        CheckpointError,
        match=r"^checkpoint origin 'doorward/other' is not 'doorward/abcdefghijklmnop': "
        r"it comes from another log$",
    ):
        open_checkpoint(note, verifier_for(key))


# --- strict parsing ---

GOOD_ROOT = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{ORIGIN}\n1\n{GOOD_ROOT}", "checkpoint must end with a newline"),
        (f"{ORIGIN}\n1\n", "checkpoint must have at least 3 lines, got 2"),
        (f"\n1\n{GOOD_ROOT}\n", "checkpoint origin line must not be empty"),
        (
            f"{ORIGIN}\n01\n{GOOD_ROOT}\n",
            "checkpoint tree size must be a decimal below 2**63 without leading zeros, got '01'",
        ),
        (
            f"{ORIGIN}\n-1\n{GOOD_ROOT}\n",
            "checkpoint tree size must be a decimal below 2**63 without leading zeros, got '-1'",
        ),
        (
            f"{ORIGIN}\n9223372036854775808\n{GOOD_ROOT}\n",
            "checkpoint tree size must be a decimal below 2**63 without leading zeros, "
            "got '9223372036854775808'",
        ),
        (f"{ORIGIN}\n1\nAAAA\n", "checkpoint root hash must be 32 bytes"),
        (f"{ORIGIN}\n1\n{GOOD_ROOT[:-1]}\n", "checkpoint root hash is not valid base64"),
        (f"{ORIGIN}\n1\n{GOOD_ROOT}\n\nx\n", "checkpoint line 4 (an extension) must not be empty"),
        (f"{ORIGIN}\n1\n{GOOD_ROOT}\t\n", "note must not contain control character U+0009"),
    ],
)
def test_checkpoint_parse_errors(text: str, message: str) -> None:
    with pytest.raises(CheckpointError) as info:
        Checkpoint.parse(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("note", "message"),
    [
        (b"text\n\n\xff\n", "note is not valid UTF-8"),
        ("text\n\n\u2014 a AAAA", "note must end with a newline"),
        ("text\n\u2014 a AAAAAAAA\n", "note has no blank line before its signatures"),
        ("text\n\n", "note has no signature lines"),
        ("text\n\n- a AAAAAAAA\n", "note signature line 1 must start with '\u2014 '"),
        (
            "text\n\n\u2014 a+b AAAAAAAA\n",
            "note signature line 1: key name must be non-empty without spaces or '+', got 'a+b'",
        ),
        ("text\n\n\u2014 a AAAA\n", "note signature line 1 is too short"),
        ("text\n\n\u2014 a AAAAAAA\n", "note signature line 1 is not valid base64"),
        ("text\n\n\u2014 a AAAAAAB=\n", "note signature line 1 is not canonical base64"),
        ("te\rxt\n\n\u2014 a AAAAAAAA\n", "note must not contain control character U+000D"),
        ("t\n\n" + "\u2014 a AAAAAAAA\n" * 41, "note has more than 40 signatures"),
        ("x" * (128 * 1024) + "\n\n\u2014 a AAAAAAAA\n", "note is longer than 131072 bytes"),
    ],
)
def test_note_parse_errors(note: str | bytes, message: str, key: Ed25519PrivateKey) -> None:
    with pytest.raises(CheckpointError) as info:
        open_note(note, verifier_for(key))
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a+b+AAAA", "verifier key must be <name>+<8 hex digits>+<base64 key>"),
        ("a+0011223G+AAAA", "verifier key must be <name>+<8 hex digits>+<base64 key>"),
        ("a+00112233+AAAA", "verifier key must hold an Ed25519 key (type 0x01, 32 bytes)"),
        ("a+00112233+AAA", "verifier key material is not valid base64"),
        (
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "verifier key ID c74f20a4 does not match its name and key",
        ),
        (
            "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "verifier key name is invalid: key name must be non-empty without spaces or '+', got ''",
        ),
    ],
)
def test_verifier_key_parse_errors(text: str, message: str) -> None:
    with pytest.raises(CheckpointError) as info:
        NoteVerifier.parse(text)
    assert str(info.value) == message


def test_verifier_round_trip(key: Ed25519PrivateKey) -> None:
    verifier = verifier_for(key)
    assert NoteVerifier.parse(str(verifier)) == verifier
    assert str(verifier).startswith(f"{ORIGIN}+{verifier.key_id.hex()}+A")


def test_sign_note_refuses_bad_input(key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match=r"^note text must end with a newline$"):
        sign_note("no newline", ORIGIN, key)
    with pytest.raises(ValueError, match=r"^note must not contain control character U\+0000$"):
        sign_note("a\x00\n", ORIGIN, key)
    with pytest.raises(ValueError, match=r"^key name must be non-empty without spaces"):
        sign_note("a\n", "two words", key)


def test_checkpoint_record_validates() -> None:
    with pytest.raises(ValueError, match=r"^root hash must be 32 bytes, got 3$"):
        Checkpoint(ORIGIN, 1, b"abc")
    with pytest.raises(ValueError, match=r"^tree size must be in \[0, 2\*\*63\), got -1$"):
        Checkpoint(ORIGIN, -1, ROOT)
    with pytest.raises(ValueError, match=r"^origin must be one non-empty line, got ''$"):
        Checkpoint("", 1, ROOT)
