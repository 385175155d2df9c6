"""Key ids, device ids, key files and key bundles."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from crypto.errors import KeyFileError
from crypto.keys import (
    DeviceIdentity,
    device_id,
    key_id,
    load_ed25519_public,
    read_secret_file,
    write_secret_file,
)
from crypto.signed import b64url_decode


def test_key_id_matches_rfc8037_thumbprint_example() -> None:
    # RFC 8037 Appendix A.3: the JWK thumbprint of the Appendix A.2 Ed25519 public key.
    public = Ed25519PublicKey.from_public_bytes(
        b64url_decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
    )
    assert key_id(public) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_device_id_is_short_lowercase_base32_and_stable() -> None:
    identity = DeviceIdentity.generate()
    assert identity.device_id == device_id(identity.public_key)
    assert len(identity.device_id) == 16
    assert set(identity.device_id) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert DeviceIdentity.generate().device_id != identity.device_id


def test_secret_file_is_written_0600_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secret"
    write_secret_file(path, b"material")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_secret_file(path) == b"material"
    assert [p.name for p in path.parent.iterdir()] == ["secret"]  # no temp file left behind


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_group_or_world_readable_secret_file_is_refused_with_fix(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "device.ed25519"
    write_secret_file(path, b"material")
    os.chmod(path, mode)
    with pytest.raises(KeyFileError) as info:
        read_secret_file(path)
    assert str(info.value) == (
        f"key file {path} is readable by group or others (mode {mode:04o}); "
        f"run `chmod 600 {path}` and try again"
    )


def test_missing_key_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        read_secret_file(tmp_path / "nope")


def test_device_identity_save_load_and_repr_hides_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "device.ed25519"
    identity = DeviceIdentity.load_or_create(path)
    again = DeviceIdentity.load_or_create(path)
    assert again.device_id == identity.device_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    signature = identity.sign(b"checkpoint")
    again.public_key.verify(signature, b"checkpoint")
    text = repr(identity)
    assert identity.device_id in text
    assert "PRIVATE" not in text
    assert path.read_text().splitlines()[1] not in text


def test_device_identity_refuses_non_ed25519_pem(tmp_path: Path) -> None:
    path = tmp_path / "device.ed25519"
    write_secret_file(path, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyFileError, match="is not an unencrypted PEM private key"):
        DeviceIdentity.load(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not base64!", "is not base64url"),
        ("AAAA", "must be 32 bytes, got 3"),
    ],
)
def test_load_ed25519_public_rejects_bad_input(text: str, message: str) -> None:
    with pytest.raises(KeyFileError, match=message):
        load_ed25519_public(text)
