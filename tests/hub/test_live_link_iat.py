"""A live link issued in the future is refused: ``iat`` may be at most a minute ahead of the
device's clock, so a link cannot stay valid longer than its maximum lifetime from now."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crypto.keys import KeyBundle
from hub.client import ApiError
from hub.wire.live_link import LinkInvalid, mint_link_token, parse_link_token
from tests.hub.hubkit import running_device

DEVICE = "dev-1"
NOW = 1_790_000_000
AHEAD = (
    "live link is issued 86400 s ahead of the doorbell's clock (at most 60 s allowed); "
    "check the phone's clock and mint a new link"
)


def test_a_link_from_the_future_is_refused() -> None:
    owner = KeyBundle.generate("x25519")
    lookup = {owner.key_id: owner.signing_key.public_key()}.get
    # Minted "for tomorrow": valid for 900 s from its iat, i.e. a whole day from now.
    future = mint_link_token(
        owner.signing_key, device_id=DEVICE, camera="front", now_s=NOW + 86400, ttl_s=900
    )
    with pytest.raises(LinkInvalid) as caught:
        parse_link_token(future, device_id=DEVICE, owner_key=lookup, now_s=NOW)
    assert str(caught.value) == AHEAD
    # A phone whose clock runs a little fast is still fine; one more second is not.
    for ahead, accepted in ((60, True), (61, False)):
        token = mint_link_token(
            owner.signing_key, device_id=DEVICE, camera="front", now_s=NOW + ahead
        )
        if accepted:
            claims = parse_link_token(token, device_id=DEVICE, owner_key=lookup, now_s=NOW)
            assert claims.issued_s == NOW + ahead
        else:
            with pytest.raises(LinkInvalid, match="ahead of the doorbell's clock"):
                parse_link_token(token, device_id=DEVICE, owner_key=lookup, now_s=NOW)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_the_device_refuses_to_register_a_link_from_the_future(tmp_path: Path) -> None:
    owner = KeyBundle.generate("x25519")
    async with running_device(tmp_path / "data", live_cameras=("front",)) as running:
        running.add_owner(owner)
        tomorrow = int(time.time()) + 86400
        token = mint_link_token(
            owner.signing_key,
            device_id=running.device.identity.device_id,
            camera="front",
            now_s=tomorrow,
            ttl_s=900,
        )
        async with running.client(owner) as api:
            with pytest.raises(ApiError) as caught:
                await api._json("POST", "/live/link", body={"token": token})
        assert (caught.value.status, caught.value.code) == (401, "token_invalid")
        assert "ahead of the doorbell's clock" in caught.value.detail
