"""Live links: owner-signed, short-lived, single-use tokens; the pure checks with a hand-set clock,
then the device's answers over HTTPS (expired, reused, not registered, not this owner's)."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from crypto.keys import KeyBundle
from hub.client import ApiError
from hub.server.live.links import LinkBook
from hub.wire.live_link import (
    LinkExpired,
    LinkInvalid,
    LinkUsed,
    mint_link_token,
    parse_link_token,
)
from tests.hub.test_live_kit import live_device

DEVICE = "dev-1"
NOW = 1_790_000_000


def _owner_lookup(*bundles: KeyBundle):
    table = {b.key_id: b.signing_key.public_key() for b in bundles}
    return table.get


def test_a_link_is_valid_until_exp_and_usable_once() -> None:
    owner = KeyBundle.generate("x25519")
    token = mint_link_token(
        owner.signing_key, device_id=DEVICE, camera="front", now_s=NOW, ttl_s=60
    )
    claims = parse_link_token(
        token, device_id=DEVICE, owner_key=_owner_lookup(owner), now_s=NOW + 59
    )
    assert (claims.owner_key_id, claims.camera, claims.expires_s) == (
        owner.key_id,
        "front",
        NOW + 60,
    )
    assert claims.jti not in repr(claims)
    book = LinkBook()
    with pytest.raises(
        LinkInvalid, match=r"^this live link was never registered with the doorbell$"
    ):
        book.consume(claims, NOW)
    book.register(claims, NOW)
    book.consume(claims, NOW + 1)
    with pytest.raises(
        LinkUsed, match=r"^this live link was already used; ask the owner for a new one$"
    ):
        book.consume(claims, NOW + 2)
    with pytest.raises(
        LinkExpired, match=r"^this live link has expired; ask the owner for a new one$"
    ):
        parse_link_token(token, device_id=DEVICE, owner_key=_owner_lookup(owner), now_s=NOW + 60)


def test_links_of_strangers_other_devices_and_forgeries_are_refused() -> None:
    owner, stranger = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    token = mint_link_token(stranger.signing_key, device_id=DEVICE, camera="front", now_s=NOW)
    with pytest.raises(LinkInvalid, match=r"^live link was not made by a current owner"):
        parse_link_token(token, device_id=DEVICE, owner_key=_owner_lookup(owner), now_s=NOW)
    other = mint_link_token(owner.signing_key, device_id="dev-2", camera="front", now_s=NOW)
    with pytest.raises(LinkInvalid, match=r"^live link is not for this doorbell"):
        parse_link_token(other, device_id=DEVICE, owner_key=_owner_lookup(owner), now_s=NOW)
    good = mint_link_token(owner.signing_key, device_id=DEVICE, camera="front", now_s=NOW)
    head, _body, sig = good.split(".")
    forged = f"{head}.{other.split('.')[1]}.{sig}"
    with pytest.raises(LinkInvalid, match=r"^live link signature does not verify$"):
        parse_link_token(forged, device_id="dev-2", owner_key=_owner_lookup(owner), now_s=NOW)
    with pytest.raises(LinkInvalid, match=r"^live link token is malformed: token must have 3"):
        parse_link_token("abc", device_id=DEVICE, owner_key=_owner_lookup(owner), now_s=NOW)
    with pytest.raises(ValueError, match=r"^ttl_s must be 1-900, got 3600$"):
        mint_link_token(owner.signing_key, device_id=DEVICE, camera="c", now_s=NOW, ttl_s=3600)


def test_the_book_caps_pending_links_and_forgets_expired_ones() -> None:
    owner = KeyBundle.generate("x25519")
    book = LinkBook(max_pending=2)
    lookup = _owner_lookup(owner)

    def claims(now: int):
        token = mint_link_token(
            owner.signing_key, device_id=DEVICE, camera="c", now_s=now, ttl_s=10
        )
        return parse_link_token(token, device_id=DEVICE, owner_key=lookup, now_s=now)

    first = claims(NOW)
    book.register(first, NOW)
    with pytest.raises(LinkUsed, match=r"^this live link was already registered; mint a new one$"):
        book.register(first, NOW)
    book.register(claims(NOW), NOW)
    with pytest.raises(Exception, match=r"^2 live links are waiting to be used; let some expire"):
        book.register(claims(NOW), NOW)
    book.register(claims(NOW + 10), NOW + 10)  # the first two expired and were pruned


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_the_device_refuses_expired_reused_and_foreign_links(tmp_path: Path) -> None:
    owner, other = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with live_device(tmp_path / "data") as live:
        live.add_owner(owner, "owner")
        live.add_owner(other, "other")
        device_id = live.device.identity.device_id
        now = int(time.time())

        async def link_offer(token: str) -> tuple[int, dict]:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    live.url + "/live/link-offer",
                    json={"token": token, "sdp": "v=0\r\n"},
                    ssl=False,
                ) as response,
            ):
                return response.status, (await response.json())["error"]

        async with live.client(owner) as api:
            # A link the owner minted but never registered is refused.
            unregistered = mint_link_token(
                owner.signing_key, device_id=device_id, camera="front", now_s=now
            )
            assert await link_offer(unregistered) == (
                401,
                {
                    "code": "token_invalid",
                    "message": "this live link was never registered with the doorbell",
                },
            )
            # An owner cannot register another owner's link.
            foreign = mint_link_token(
                other.signing_key, device_id=device_id, camera="front", now_s=now
            )
            with pytest.raises(ApiError) as refused:
                await api._json("POST", "/live/link", body={"token": foreign})
            assert (refused.value.status, refused.value.detail) == (
                401,
                "a live link must be signed by the owner who registers it",
            )
            # An expired link: minted in the past, registered as it lapses.
            stale = mint_link_token(
                owner.signing_key, device_id=device_id, camera="front", now_s=now - 120, ttl_s=60
            )
            with pytest.raises(ApiError) as expired:
                await api._json("POST", "/live/link", body={"token": stale})
            assert (expired.value.status, expired.value.code) == (410, "expired")
            assert await link_offer(stale) == (
                410,
                {
                    "code": "expired",
                    "message": "this live link has expired; ask the owner for a new one",
                },
            )
            # A registered link works once; the second use is refused before any WebRTC starts.
            body = await api._json("POST", "/live/link", body={"token": unregistered})
            assert body["url"].startswith("https://127.0.0.1:")
            assert body["url"].endswith("/live/page?t=" + unregistered)
            status, error = await link_offer(unregistered)
            assert (status, error["message"]) == (
                400,
                "the offer has no video section; offer to receive video",
            )
            assert await link_offer(unregistered) == (
                409,
                {
                    "code": "token_replayed",
                    "message": "this live link was already used; ask the owner for a new one",
                },
            )
        assert live.relay.viewer_count() == 0
