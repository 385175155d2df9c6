"""Pairing over HTTPS: the first phone becomes admin; a wrong code fails and is counted on disk; the
21st attempt is refused even after a restart until the button is held; later phones need an
admin's signed approval."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto.errors import PairingFailed
from crypto.keys import KeyBundle
from crypto.setup_code import PairingURI, SetupCode
from hub.client import ApiError, pair
from hub.server import appkeys
from hub.server.config import ServeConfig
from tests.hub.hubkit import Running, running_device

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


def _uri(running: Running, code: SetupCode | None = None) -> PairingURI:
    return PairingURI(
        running.device.identity.device_id,
        code or running.device.setup_code,
        running.device.fingerprint,
    )


def _wrong(code: SetupCode) -> SetupCode:
    digits = code.digits()
    return SetupCode(digits[:-1] + str((int(digits[-1]) + 1) % 10))


async def test_first_phone_pairs_as_admin(tmp_path: Path) -> None:
    phone = KeyBundle.generate()
    async with running_device(tmp_path / "data") as running:
        device_keys = await pair(running.url, _uri(running), phone, name="Ada's phone")
        assert device_keys.tls_fingerprint == running.device.fingerprint
        [owner] = running.device.owners.list_owners()
        assert (owner.key_id, owner.admin, owner.recipient) == (
            phone.key_id,
            True,
            str(phone.recipient),
        )
        async with running.client(phone) as api:
            entries = await api.audit_entries()
        assert b'"kind":"owner.added"' in entries.leaves[-1]
        assert running.app[appkeys.PAIRING].failures == 0


async def test_wrong_code_fails_on_the_phone_and_is_counted(tmp_path: Path) -> None:
    phone = KeyBundle.generate("x25519")
    async with running_device(tmp_path / "data") as running:
        wrong = _uri(running, _wrong(running.device.setup_code))
        with pytest.raises(PairingFailed, match="the setup code was typed wrong"):
            await pair(running.url, wrong, phone, name="phone")
        assert running.app[appkeys.PAIRING].failures == 1
        assert running.device.owners.list_owners() == []
        # Another phone must wait while that attempt's session is open...
        other = KeyBundle.generate("x25519")
        with pytest.raises(ApiError) as caught:
            await pair(running.url, _uri(running), other, name="other")
        assert (caught.value.status, caught.value.code) == (409, "pairing_busy")
        # ...but the same phone may start over with the right code.
        await pair(running.url, _uri(running), phone, name="phone")
        assert running.app[appkeys.PAIRING].failures == 0


async def test_twenty_first_attempt_is_refused_even_after_restart(tmp_path: Path) -> None:
    phone = KeyBundle.generate("x25519")
    data = tmp_path / "data"
    # A burst large enough that the rate limit never answers first.
    config = ServeConfig(data_dir=data, rate_burst=50)
    states: list[str] = []
    async with running_device(data, config=config) as running:
        running.app[appkeys.PAIRING].on_state = states.append
        wrong = _uri(running, _wrong(running.device.setup_code))
        for _ in range(20):
            with pytest.raises(PairingFailed):
                await pair(running.url, wrong, phone, name="phone")
            running.app[appkeys.PAIRING].close()  # the phone gave up; the next attempt may start
        with pytest.raises(ApiError) as caught:
            await pair(running.url, _uri(running), phone, name="phone")
        assert (caught.value.status, caught.value.code) == (403, "pairing_locked")
        assert states == ["locked"]  # zeroconf re-announces pair=locked
    async with running_device(data, config=config) as restarted:
        restarted.app[appkeys.PAIRING].on_state = states.append
        assert restarted.app[appkeys.PAIRING].state == "locked"
        assert restarted.app[appkeys.PAIRING].failures == 20
        with pytest.raises(ApiError) as caught:
            await pair(restarted.url, _uri(restarted), phone, name="phone")
        assert caught.value.detail == (
            "pairing is locked after 20 failed attempts; hold the doorbell button to unlock it"
        )
        restarted.app[appkeys.PAIRING].unlock()  # what holding the button does
        await pair(restarted.url, _uri(restarted), phone, name="phone")
        assert [o.key_id for o in restarted.device.owners.list_owners()] == [phone.key_id]
        assert states == ["locked", "open", "closed"]


async def test_second_phone_needs_an_admin_approval(tmp_path: Path) -> None:
    admin, second = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with running_device(tmp_path / "data") as running:
        await pair(running.url, _uri(running), admin, name="admin")
        with pytest.raises(ApiError) as caught:
            await pair(running.url, _uri(running), second, name="second")
        assert (caught.value.status, caught.value.code) == (403, "approval_required")
        assert running.app[appkeys.PAIRING].failures == 0  # refused before any code was tried
        async with running.client(admin) as api:
            await api.approve_owner(second.key_id)
        await pair(running.url, _uri(running), second, name="second")
        owners = running.device.owners.list_owners()
        assert [(o.key_id, o.admin) for o in owners] == [
            (admin.key_id, True),
            (second.key_id, False),
        ]
        # A non-admin cannot approve anyone.
        third = KeyBundle.generate("x25519")
        async with running.client(second) as api:
            with pytest.raises(ApiError) as caught:
                await api.approve_owner(third.key_id)
        assert caught.value.detail == "only an admin can approve a new owner"


async def test_pairing_pins_the_device_key(tmp_path: Path) -> None:
    """A URI with another device's fingerprint fails in the TLS handshake itself."""
    phone = KeyBundle.generate("x25519")
    async with running_device(tmp_path / "a") as one, running_device(tmp_path / "b") as other:
        foreign = PairingURI(
            one.device.identity.device_id, one.device.setup_code, other.device.fingerprint
        )
        with pytest.raises(Exception, match="is not the pinned"):
            await pair(one.url, foreign, phone, name="phone")
        assert one.app[appkeys.PAIRING].failures == 0


async def test_unauthenticated_routes_are_rate_limited(tmp_path: Path) -> None:
    data = tmp_path / "data"
    phone = KeyBundle.generate("x25519")
    async with running_device(
        data, config=ServeConfig(data_dir=data, rate_per_s=0.001, rate_burst=2)
    ) as running:
        wrong = _uri(running, _wrong(running.device.setup_code))
        for _ in range(2):
            with pytest.raises(PairingFailed):
                await pair(running.url, wrong, phone, name="phone")
            running.app[appkeys.PAIRING].close()
        with pytest.raises(ApiError) as caught:
            await pair(running.url, wrong, phone, name="phone")
        assert (caught.value.status, caught.value.code) == (429, "rate_limited")
        assert caught.value.detail.startswith("too many requests from this address; retry in ")
        assert running.app[appkeys.PAIRING].failures == 2  # the refused attempt was never counted
