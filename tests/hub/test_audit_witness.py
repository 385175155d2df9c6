"""Owners' audits against a real device: paging past 10,000 entries, cosignatures, split views.

Attack 3: the owner's audit read ``[0, size)`` in one call, which the device refuses past 10,000
entries. Attack 4: a device that keeps one log for one owner and another for the next went
unnoticed, as each phone compared only with its own checkpoint.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import pytest_asyncio

from consent import SplitView
from consent.audit import AuditLog
from consent.audit_verify import AuditVerifier
from consent.witness import open_cosigned
from crypto.keys import KeyBundle
from hub.client import ApiError
from hub.client.audit import check_audit
from tests.hub.hubkit import Running, running_device

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]


def verifier_for(running: Running, state: Path | None = None) -> AuditVerifier:
    audit = running.device.audit
    return AuditVerifier(running.device.identity.public_key, audit.origin, state_path=state)


def fill(audit: AuditLog, n: int, tag: str) -> None:
    """Append ``n`` entries in one transaction (as quick as the log allows)."""
    db = audit._db
    db.execute("BEGIN")
    for i in range(n):
        audit.append("request.received", request_id=f"{tag}-{i}", category="theft")
    db.execute("COMMIT")


async def audit_as(running: Running, owner: KeyBundle, verifier: AuditVerifier):  # type: ignore[no-untyped-def]
    async with running.client(owner) as phone:
        return await check_audit(
            phone, verifier, signing_key=owner.signing_key, now=int(time.time())
        )


@pytest_asyncio.fixture
async def two_owners(tmp_path: Path) -> AsyncIterator[tuple[Running, KeyBundle, KeyBundle]]:
    alice, bob = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with running_device(tmp_path / "data") as running:
        running.add_owner(alice, "alice")
        running.add_owner(bob, "bob")
        yield running, alice, bob


@pytest.mark.slow
async def test_owner_audit_pages_past_ten_thousand_entries(two_owners, tmp_path: Path) -> None:
    running, alice, _ = two_owners
    fill(running.device.audit, 10_050, "flood")
    async with running.client(alice) as phone:
        # What the phone used to ask for: everything at once, which the device refuses.
        with pytest.raises(ApiError) as refused:
            await phone.audit_entries(0, 10_050)
        assert (refused.value.status, refused.value.code) == (400, "bad_request")
    state = tmp_path / "alice.checkpoint"
    report = await audit_as(running, alice, verifier_for(running, state))
    assert (report.size, report.previous_size, len(report.leaves)) == (10_050, 0, 10_050)
    fill(running.device.audit, 10, "later")
    again = await audit_as(running, alice, verifier_for(running, state))
    assert (again.size, again.previous_size, again.first_index) == (10_060, 10_050, 10_050)
    assert len(again.leaves) == 10  # only the new entries were read


async def test_owners_cosign_and_see_each_others_cosignatures(two_owners, tmp_path: Path) -> None:
    running, alice, bob = two_owners
    fill(running.device.audit, 5, "a")
    first = await audit_as(running, alice, verifier_for(running, tmp_path / "alice"))
    assert {(c.name, c.size) for c in first.cosigners} == {("alice", 5), ("bob", None)}
    second = await audit_as(running, bob, verifier_for(running, tmp_path / "bob"))
    assert {(c.name, c.size) for c in second.cosigners} == {("alice", 5), ("bob", 5)}
    # The checkpoint the device serves now carries both owners' cosignatures.
    async with running.client(alice) as phone:
        note = await phone.audit_checkpoint()
        owners = {o.key_id: o for o in await phone.owners()}
    keys = {
        kid: k.signing_key.public_key() for kid, k in ((alice.key_id, alice), (bob.key_id, bob))
    }
    cosigned = open_cosigned(note, verifier_for(running).note_verifier, keys)
    assert {c.owner_key_id for c in cosigned} == set(owners) == {alice.key_id, bob.key_id}
    # The log grows; Alice's next audit checks Bob's older cosignature with a consistency proof.
    fill(running.device.audit, 3, "b")
    third = await audit_as(running, alice, verifier_for(running, tmp_path / "alice"))
    assert (third.size, len(third.leaves)) == (8, 3)
    assert {(c.name, c.size) for c in third.cosigners} == {("alice", 8), ("bob", 5)}


async def test_a_cosignature_must_be_the_owners_and_of_the_devices_tree(two_owners) -> None:
    running, alice, bob = two_owners
    fill(running.device.audit, 4, "a")
    verifier = verifier_for(running)
    from consent.witness import cosign

    async with running.client(alice) as phone:
        note = await phone.audit_checkpoint()
        verifier.verify_update(note, [])
        # Bob's cosignature posted by Alice is not Alice's.
        bobs = cosign(
            note, owner_key_id=bob.key_id, signing_key=bob.signing_key, now=int(time.time())
        )
        with pytest.raises(ApiError) as caught:
            await phone.post_cosignature(bobs)
        assert (caught.value.status, caught.value.code) == (400, "cosignature_invalid")
        assert (
            caught.value.detail == f"note carries no cosignature by doorward-owner/{alice.key_id}"
        )


async def forked(tmp_path: Path, stack: AsyncExitStack) -> tuple[Running, Running]:
    """One device key, two logs: the view shown to Alice and the view shown to Bob."""
    first = await stack.enter_async_context(running_device(tmp_path / "alice-view"))
    keys = tmp_path / "bob-view" / "keys"
    keys.parent.mkdir()
    shutil.copytree(tmp_path / "alice-view" / "keys", keys)
    second = await stack.enter_async_context(running_device(tmp_path / "bob-view"))
    assert second.device.identity.device_id == first.device.identity.device_id
    return first, second


def relay_cosignature(source: Running, target: Running, owner: KeyBundle) -> None:
    """The forked device serves Alice's cosignature (made on her view) with Bob's view too."""
    row = source.device.cosignatures._db.execute(
        "SELECT * FROM audit_cosignatures WHERE owner_key_id = ?", (owner.key_id,)
    ).fetchone()
    with sqlite3.connect(target.device.data_dir / "audit.db") as db:
        db.execute("INSERT OR REPLACE INTO audit_cosignatures VALUES (?, ?, ?, ?, ?)", row)


@pytest.mark.parametrize(("alice_size", "bob_size"), [(6, 6), (6, 9), (9, 6)])
async def test_the_second_phone_detects_a_split_view(
    tmp_path: Path, alice_size: int, bob_size: int
) -> None:
    alice, bob = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with AsyncExitStack() as stack:
        alice_view, bob_view = await forked(tmp_path, stack)
        for view in (alice_view, bob_view):
            view.add_owner(alice, "alice")
            view.add_owner(bob, "bob")
        fill(alice_view.device.audit, alice_size, "shown-to-alice")
        fill(bob_view.device.audit, bob_size, "shown-to-bob")
        await audit_as(alice_view, alice, verifier_for(alice_view, tmp_path / "alice"))
        # Without Alice's cosignature, Bob's phone sees a consistent log (and no cosigner).
        state = tmp_path / "bob"
        alone = await audit_as(bob_view, bob, verifier_for(bob_view, state))
        assert {(c.name, c.size) for c in alone.cosigners} == {("alice", None), ("bob", bob_size)}
        stored = state.read_text()

        relay_cosignature(alice_view, bob_view, alice)
        fill(bob_view.device.audit, 2, "more-for-bob")
        with pytest.raises(SplitView) as caught:
            await audit_as(bob_view, bob, verifier_for(bob_view, state))
        assert str(caught.value).startswith(
            f"owner {alice.key_id} cosigned a checkpoint of size {alice_size}"
        )
        assert str(caught.value).endswith("the device shows different logs to different owners")
        assert state.read_text() == stored  # nothing was accepted
