"""Interop both ways with pyrage and Debian's `age`/`age-keygen` (X25519; hybrid rests on vectors)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
from pathlib import Path

import pyrage
import pytest

from crypto import age
from crypto.errors import NoIdentityMatched

# Spans a chunk boundary so the STREAM counter and final flag are exercised.
PLAINTEXT = os.urandom(age.CHUNK_SIZE + 1234)


def _write_key(path: Path, identity: age.X25519Identity) -> Path:
    path.write_text(f"# public key: {identity.recipient()}\n{identity.to_secret_string()}\n")
    path.chmod(0o600)
    return path


def _run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, input=stdin, capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize("armored", [False, True])
def test_ours_to_pyrage(armored: bool) -> None:
    identity = age.X25519Identity.generate()
    other = age.X25519Identity.generate()
    data = age.encrypt_bytes([other.recipient(), identity.recipient()], PLAINTEXT, armor=armored)
    assert data.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----\n") is armored
    theirs = pyrage.x25519.Identity.from_str(identity.to_secret_string())
    assert pyrage.decrypt(data, [theirs]) == PLAINTEXT


@pytest.mark.parametrize("armored", [False, True])
def test_pyrage_to_ours(armored: bool) -> None:
    theirs = pyrage.x25519.Identity.generate()
    data = pyrage.encrypt(PLAINTEXT, [theirs.to_public()], armored=armored)
    identity = age.parse_identity(str(theirs))
    assert age.decrypt_bytes([identity], data) == PLAINTEXT
    assert str(identity.recipient()) == str(theirs.to_public())


def test_ours_passphrase_to_pyrage() -> None:
    # (pyrage picks its own scrypt work factor by timing, about a second per file, so the
    # other direction is left to the scrypt_* vectors.)
    ours = age.encrypt_bytes([age.ScryptRecipient(b"hunter2", work_factor=10)], b"back")
    assert pyrage.passphrase.decrypt(ours, "hunter2") == b"back"


@pytest.mark.parametrize("armored", [False, True])
def test_ours_to_age_cli(tmp_path: Path, age_cli: str, armored: bool) -> None:
    identity = age.X25519Identity.generate()
    key = _write_key(tmp_path / "key.txt", identity)
    data = age.encrypt_bytes([identity.recipient()], PLAINTEXT, armor=armored)
    result = _run(age_cli, "-d", "-i", str(key), stdin=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == PLAINTEXT


@pytest.mark.parametrize("armored", [False, True])
def test_age_cli_to_ours(age_cli: str, armored: bool) -> None:
    identity = age.X25519Identity.generate()
    flags = ["-a"] if armored else []
    result = _run(age_cli, "-e", *flags, "-r", str(identity.recipient()), stdin=PLAINTEXT)
    assert result.returncode == 0, result.stderr
    assert age.decrypt_bytes([identity], result.stdout) == PLAINTEXT


def test_age_keygen_keys_load(tmp_path: Path, age_cli: str, age_keygen_cli: str) -> None:
    key = tmp_path / "key.txt"
    result = _run(age_keygen_cli, "-o", str(key))
    assert result.returncode == 0, result.stderr
    identities = age.parse_identities(key.read_text())
    assert len(identities) == 1
    public = _run(age_keygen_cli, "-y", str(key)).stdout.decode().strip()
    assert str(identities[0].recipient()) == public
    # A file `age` encrypts to that key opens with the loaded identity, and ours opens in `age`.
    encrypted = _run(age_cli, "-e", "-r", public, stdin=b"from age").stdout
    assert age.decrypt_bytes(identities, encrypted) == b"from age"
    ours = age.encrypt_bytes([age.parse_recipient(public)], b"from doorward")
    assert _run(age_cli, "-d", "-i", str(key), stdin=ours).stdout == b"from doorward"


def test_our_keys_load_in_age_keygen(tmp_path: Path, age_keygen_cli: str) -> None:
    identity = age.X25519Identity.generate()
    key = _write_key(tmp_path / "key.txt", identity)
    result = _run(age_keygen_cli, "-y", str(key))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == str(identity.recipient())


def test_reheadered_file_opens_for_requester_only(tmp_path: Path, age_cli: str) -> None:
    owner = age.X25519Identity.generate()
    requester = age.X25519Identity.generate()
    original = io.BytesIO()
    enc = age.encrypt([owner.recipient()], PLAINTEXT, original)
    header, payload = age.split_header(original.getvalue())
    assert header == enc.header
    assert hashlib.sha256(payload).digest() == enc.payload_sha256
    released = age.reheader(header, [owner], [requester.recipient()]) + payload
    assert age.payload_sha256(released) == enc.payload_sha256

    requester_key = _write_key(tmp_path / "requester.key", requester)
    owner_key = _write_key(tmp_path / "owner.key", owner)
    opened = _run(age_cli, "-d", "-i", str(requester_key), stdin=released)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout == PLAINTEXT
    refused = _run(age_cli, "-d", "-i", str(owner_key), stdin=released)
    assert refused.returncode != 0
    assert b"no identity matched any of the recipients" in refused.stderr
    # pyrage agrees, and so do we.
    theirs = pyrage.x25519.Identity.from_str(requester.to_secret_string())
    assert pyrage.decrypt(released, [theirs]) == PLAINTEXT
    with pytest.raises(NoIdentityMatched):
        age.decrypt_bytes([owner], released)
