"""Pairing proves possession of the signing key it registers: someone who knows the setup code
cannot register another phone's public key with their own age recipient. Real TLS on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from crypto.keys import KeyBundle
from crypto.setup_code import PairingURI
from hub.client import ApiError, pair
from hub.server import appkeys
from tests.hub.hubkit import Running, running_device

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


class BorrowedKey:
    """What an attacker has: the victim's public key, and only their own private key to sign
    with. It answers as the victim's key wherever a public key is read."""

    def __init__(self, victim: Ed25519PublicKey, own: Ed25519PrivateKey) -> None:
        self._victim, self._own = victim, own

    def public_key(self) -> Ed25519PublicKey:
        return self._victim

    def public_bytes_raw(self) -> bytes:
        return self._victim.public_bytes_raw()

    def public_bytes(self, *args: object) -> bytes:
        return self._victim.public_bytes(*args)  # type: ignore[arg-type]

    def sign(self, data: bytes) -> bytes:
        return self._own.sign(data)


def _uri(running: Running) -> PairingURI:
    return PairingURI(
        running.device.identity.device_id,
        running.device.setup_code,
        running.device.fingerprint,
    )


async def test_setup_code_alone_cannot_register_another_phones_key(tmp_path: Path) -> None:
    victim, attacker = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    # The attacker knows the setup code and the victim phone's public key (it is not secret).
    hostile = SimpleNamespace(
        signing_key=BorrowedKey(victim.signing_key.public_key(), attacker.signing_key),
        recipient=attacker.recipient,
    )
    async with running_device(tmp_path / "data") as running:
        desk = running.app[appkeys.PAIRING]
        with pytest.raises(ApiError) as caught:
            await pair(running.url, _uri(running), hostile, name="victim's phone")  # type: ignore[arg-type]
        assert (caught.value.status, caught.value.code) == (403, "pairing_failed")
        assert "did not prove it holds the signing key" in caught.value.detail
        # Nothing registered, and the attempt stays counted as a failed one.
        assert running.device.owners.list_owners(include_removed=True) == []
        assert desk.failures == 1
        kinds = [e.body()["kind"] for e in running.device.audit.entries()]
        assert kinds[-1] == "pairing.failed"
        assert "owner.added" not in kinds

        # The real phone, with its own key, then pairs as admin; the count resets.
        await pair(running.url, _uri(running), victim, name="victim's phone")
        [owner] = running.device.owners.list_owners()
        assert (owner.key_id, owner.admin, owner.recipient) == (
            victim.key_id,
            True,
            str(victim.recipient),
        )
        assert desk.failures == 0


async def test_an_honest_phone_still_pairs_and_signs_nothing_else(tmp_path: Path) -> None:
    phone = KeyBundle.generate()
    async with running_device(tmp_path / "data") as running:
        keys = await pair(running.url, _uri(running), phone, name="Ada's phone")
        assert keys.device_id == running.device.identity.device_id
        assert [o.key_id for o in running.device.owners.list_owners()] == [phone.key_id]
