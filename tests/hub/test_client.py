"""The Python client against a real device: TLS pinning, audit proofs a phone can check, the event
stream, errors as typed ApiError with stable codes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from consent import Policy
from consent.audit_verify import AuditVerifier
from consent.policy_doc import sign_policy
from crypto.keys import KeyBundle
from crypto.tls import PinMismatch
from hub.client import ApiError, DoorwardClient, EventStreamDropped
from hub.server import appkeys
from hub.server.events import QUEUE_LENGTH
from tests.hub.hubkit import Running, running_device

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


@pytest_asyncio.fixture
async def device(tmp_path: Path) -> AsyncIterator[tuple[Running, KeyBundle]]:
    owner = KeyBundle.generate("x25519")
    async with running_device(tmp_path / "data") as running:
        running.add_owner(owner)
        yield running, owner


async def test_a_client_pinned_to_another_key_refuses_to_talk(device, tmp_path: Path) -> None:
    running, owner = device
    async with running_device(tmp_path / "other") as other:
        client = DoorwardClient(
            running.url,
            fingerprint=other.device.fingerprint,
            device_id=running.device.identity.device_id,
            key=owner.signing_key,
        )
        async with client:
            with pytest.raises(aiohttp.ClientConnectorCertificateError) as caught:
                await client.health()
    assert isinstance(caught.value.certificate_error, PinMismatch)
    assert f"is not the pinned {other.device.fingerprint}" in str(caught.value.certificate_error)
    # Nothing reached the application: no request was signed into the replay cache.
    assert len(running.app[appkeys.AUTH].replay) == 0


async def test_audit_checkpoints_and_proofs_verify_on_the_phone(device) -> None:
    running, owner = device
    audit = running.device.audit
    for i in range(5):
        audit.append("clip.deleted", clip_id=f"clip-{i}", owner=owner.key_id[:16])
    verifier = AuditVerifier(running.device.identity.public_key, audit.origin)
    async with running.client(owner) as phone:
        first = await phone.audit_checkpoint()
        verifier.verify_update(first, [])
        entries = await phone.audit_entries()
        assert verifier.verify_entries(list(entries.leaves), first).size == 5
        proof = await phone.inclusion_proof(3, 5)
        verifier.verify_inclusion(entries.leaves[3], 3, proof, first)
        audit.append("clip.deleted", clip_id="clip-5", owner=owner.key_id[:16])
        second = await phone.audit_checkpoint()
        consistency = await phone.consistency_proof(5, 6)
        assert verifier.verify_update(second, consistency).size == 6
        with pytest.raises(ApiError) as caught:
            await phone.inclusion_proof(3, 7)
        assert (caught.value.status, caught.value.code) == (400, "bad_request")
        assert caught.value.detail == "size must be between 1 and 6, got 7"


async def test_event_stream_delivers_bus_events_in_order(device) -> None:
    running, owner = device
    bus = running.app[appkeys.BUS]
    async with running.client(owner) as phone:
        received = []
        stream = phone.events(("doorbell.pressed", "owner.added"))
        waiter = asyncio.ensure_future(anext(stream))
        await asyncio.wait_for(bus.wait_for_subscriber(), 10)
        bus.publish("motion", camera="front", score=0.5)  # filtered out
        bus.publish("doorbell.pressed", camera="front")
        bus.publish("owner.added", key_id="k")
        received.append(await asyncio.wait_for(waiter, 10))
        received.append(await asyncio.wait_for(anext(stream), 10))
        await stream.aclose()
    assert [(e.kind, e.data) for e in received] == [
        ("doorbell.pressed", {"camera": "front"}),
        ("owner.added", {"key_id": "k"}),
    ]
    assert received[1].seq > received[0].seq


async def test_event_stream_refuses_unknown_kinds(device) -> None:
    running, owner = device
    async with running.client(owner) as phone:
        with pytest.raises(ApiError) as caught:
            await anext(phone.events(("motion", "sneeze")))
    assert caught.value.status == 400


async def test_errors_are_json_with_stable_codes(device) -> None:
    running, owner = device
    async with running.client(owner) as phone:
        with pytest.raises(ApiError) as caught:
            await phone.clips(limit=0)
        assert (caught.value.code, caught.value.detail) == (
            "bad_request",
            "limit must be between 1 and 1000, got 0",
        )
        with pytest.raises(ApiError) as caught:
            await phone.requests(status="maybe")
        assert caught.value.detail.startswith("status must be one of pending, auto_declined")
        with pytest.raises(ApiError) as caught:
            await phone.request("nope")
        assert (caught.value.status, caught.value.code) == (404, "not_found")
        with pytest.raises(ApiError) as caught:
            await phone.set_policy('{"not": "signed"}')
        assert (caught.value.status, caught.value.code) == (400, "policy_invalid")
        with pytest.raises(ApiError) as caught:
            await phone._json("GET", "/no/such/route")
        assert (caught.value.status, caught.value.code) == (404, "not_found")


async def test_clip_paging(device) -> None:
    running, owner = device
    store = running.device.store
    now = time.time() - 3600
    ids = [store.open_clip("front", now + i) for i in range(5)]
    async with running.client(owner) as phone:
        first = await phone.clips(limit=2)
        second = await phone.clips(limit=2, after=first.next)
        third = await phone.clips(limit=2, after=second.next)
        assert [c.clip_id for c in first.clips + second.clips + third.clips] == ids
        assert third.next is None
        only = await phone.clips(camera="back")
        assert only.clips == ()


async def test_a_client_that_falls_behind_is_disconnected(device) -> None:
    running, owner = device
    bus = running.app[appkeys.BUS]
    async with running.client(owner) as phone:
        stream = phone.events()
        first = asyncio.ensure_future(anext(stream))
        await asyncio.wait_for(bus.wait_for_subscriber(), 10)
        # Published without yielding: the sender cannot keep up, so the queue overflows.
        for i in range(QUEUE_LENGTH + 10):
            bus.publish("motion", camera="front", n=i)
        received = [await asyncio.wait_for(first, 10)]

        async def rest() -> None:
            async for event in stream:
                received.append(event)

        with pytest.raises(EventStreamDropped, match="fell behind; reconnect and re-list"):
            await rest()
    # Everything queued before the overflow arrives in order, then the stream ends.
    assert [e.data["n"] for e in received] == list(range(QUEUE_LENGTH))
    assert bus.subscriber_count == 0
    assert bus.dropped_subscribers == 1


async def test_owner_sets_a_signed_policy_and_an_old_one_cannot_be_replayed(device) -> None:
    running, owner = device
    device_id = running.device.identity.device_id
    stricter = Policy(refused_kinds=frozenset({"federal_agency", "state_agency"}))
    now = int(time.time())
    document = sign_policy(stricter, owner.signing_key, device_id=device_id, issued_at_s=now)
    older = sign_policy(Policy(), owner.signing_key, device_id=device_id, issued_at_s=now - 10)
    async with running.client(owner) as phone:
        installed = await phone.set_policy(document)
        assert installed["refused_kinds"] == ["federal_agency", "state_agency"]
        assert (await phone.policy()) == installed
        with pytest.raises(ApiError) as caught:
            await phone.set_policy(older)
    assert (caught.value.status, caught.value.code) == (400, "policy_invalid")
    assert "an old policy cannot be replayed" in caught.value.detail
