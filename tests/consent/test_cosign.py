"""C2SP tlog-cosignature v1 (Ed25519): key ID, signed message layout, lines, verification."""

from __future__ import annotations

import base64
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent._audit_errors import CosignatureError
from consent._cosign import (
    Cosigner,
    add_cosignature,
    cosignature_message,
    cosigner_key_id,
    owner_cosigner,
    sign_cosignature,
    verify_cosignature,
)
from consent._note import Checkpoint, NoteVerifier, open_checkpoint, sign_checkpoint

KEY = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
DEVICE = Ed25519PrivateKey.from_private_bytes(bytes([3]) * 32)
NAME = "witness.example/w1"
# The spec's example checkpoint body (c2sp.org/tlog-cosignature, "Ed25519 signed message").
BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def test_key_id_uses_signature_type_0x04() -> None:
    # Worked by hand: the public key of the seed 07…07 is ea4a6c63…46d22c;
    # SHA-256("witness.example/w1" || 0x0A || 0x04 || key)[:4] = aa4a09d1, whereas the plain
    # Ed25519 note key ID (type 0x01) of the same name and key is 68cca5d4.
    assert KEY.public_key().public_bytes_raw().hex() == (
        "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
    )
    assert cosigner_key_id(NAME, KEY.public_key()).hex() == "aa4a09d1"
    assert NoteVerifier(NAME, KEY.public_key()).key_id.hex() == "68cca5d4"
    cosigner = Cosigner(NAME, KEY.public_key())
    material = base64.b64encode(b"\x04" + KEY.public_key().public_bytes_raw()).decode()
    assert cosigner.vkey() == f"{NAME}+aa4a09d1+{material}"


def test_signed_message_layout_matches_the_spec_example() -> None:
    assert cosignature_message(BODY, 1679315147) == (
        b"cosignature/v1\n"
        b"time 1679315147\n"
        b"example.com/behind-the-sofa\n"
        b"20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )
    assert cosignature_message(BODY, 0).startswith(b"cosignature/v1\ntime 0\n")
    with pytest.raises(ValueError, match=r"^cosignature time must be in \[0, 2\*\*63\), got -1$"):
        cosignature_message(BODY, -1)
    with pytest.raises(ValueError, match=r"must end with a newline"):
        cosignature_message(BODY[:-1], 1)


def test_the_spec_example_line_has_the_timestamped_layout() -> None:
    # The witness line of the spec's example: key ID, then the big-endian u64 time of its
    # message ("time 1679315147"), then a 64-byte signature.
    blob = base64.b64decode(
        "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZ"
        "qhf5nNo0xUe+mbIUBkBIfZ+qnA=="
    )
    assert (len(blob), blob[:4].hex(), struct.unpack(">Q", blob[4:12])[0]) == (
        76,
        "8d66cf3f",
        1679315147,
    )


def test_line_layout_and_verification() -> None:
    cosignature = sign_cosignature(BODY, NAME, KEY, 1679315147)
    assert cosignature.line.startswith(f"\u2014 {NAME} ")
    blob = base64.b64decode(cosignature.line.split(" ")[2])
    assert blob[:4].hex() == "aa4a09d1"
    assert blob[4:12] == (1679315147).to_bytes(8, "big")
    KEY.public_key().verify(blob[12:], cosignature_message(BODY, 1679315147))

    note = sign_checkpoint(Checkpoint.parse(BODY), DEVICE)
    cosigned = add_cosignature(note, NAME, KEY, 1679315147)
    assert cosigned == note + cosignature.line
    # The device's own verifier ignores the extra line; the cosigner's verifies.
    verifier = NoteVerifier("example.com/behind-the-sofa", DEVICE.public_key())
    assert open_checkpoint(cosigned, verifier).size == 20852163
    found = verify_cosignature(cosigned, Cosigner(NAME, KEY.public_key()))
    assert (found.timestamp, found.line) == (1679315147, cosignature.line)
    # Cosigning again replaces the cosigner's line rather than adding a second one.
    again = add_cosignature(cosigned, NAME, KEY, 1679315200)
    assert again.count(f"\u2014 {NAME} ") == 1
    assert verify_cosignature(again, Cosigner(NAME, KEY.public_key())).timestamp == 1679315200


def test_bad_cosignatures_are_refused() -> None:
    note = sign_checkpoint(Checkpoint.parse(BODY), DEVICE)
    cosigned = add_cosignature(note, NAME, KEY, 1679315147)
    cosigner = Cosigner(NAME, KEY.public_key())
    with pytest.raises(CosignatureError, match=rf"^note carries no cosignature by {NAME}$"):
        verify_cosignature(note, cosigner)
    altered = cosigned.replace("\n20852163\n", "\n20852164\n")
    with pytest.raises(CosignatureError, match=r"does not verify: the checkpoint or its time"):
        verify_cosignature(altered, cosigner)
    # Another timestamp under the same signature.
    encoded = cosigned.rsplit(" ", 1)[1].strip()
    blob = bytearray(base64.b64decode(encoded))
    blob[11] ^= 1
    forged = cosigned.replace(encoded, base64.b64encode(bytes(blob)).decode())
    with pytest.raises(CosignatureError, match=r"does not verify"):
        verify_cosignature(forged, cosigner)
    # A line with the right name and key ID but the wrong length.
    short = cosigned.replace(encoded, base64.b64encode(bytes(blob[:40])).decode())
    with pytest.raises(CosignatureError, match=r"must be 76 bytes .* got 40$"):
        verify_cosignature(short, cosigner)
    # Someone else's key under the same name is not this cosigner: ignored, so missing.
    other = Cosigner(NAME, Ed25519PrivateKey.from_private_bytes(bytes([9]) * 32).public_key())
    with pytest.raises(CosignatureError, match=r"no cosignature"):
        verify_cosignature(cosigned, other)


def test_owner_cosigner_names() -> None:
    cosigner = owner_cosigner("abc-DEF_123", KEY.public_key())
    assert cosigner.name == "doorward-owner/abc-DEF_123"
    with pytest.raises(ValueError, match=r"owner key id must be base64url"):
        owner_cosigner("a b", KEY.public_key())
