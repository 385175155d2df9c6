"""A flood of requests from fresh requester keys cannot take every pending slot, nor the record.

Before: the only cap was 500 pending requests from everyone, and requester keys are free to mint,
so one client could fill every slot (each request adding two audit entries) and the owners' real
requests were refused; every refusal after that was one more audit entry and log line.
"""

from __future__ import annotations

import logging

import pytest

from consent._refusals import RefusalCounter
from consent._request_limits import RequestLimits, address_group
from consent.desk import ConsentDesk
from consent.errors import RequestLimited
from consent.models import RequestStatus
from crypto.keys import DeviceIdentity, KeyBundle
from tests.consent.kit import NOW, World, make_request

FLOODER = "203.0.113.7"
NEIGHBOUR = "198.51.100.20"


def desk_with(world: World, device: DeviceIdentity, limits: RequestLimits) -> ConsentDesk:
    return ConsentDesk(
        world.db_path,
        device=device,
        clips=world.clips,
        audit=world.audit,  # type: ignore[arg-type]
        owners=world.owners,
        limits=limits,
    )


def audit_kinds(world: World) -> list[str]:
    return [e.body()["kind"] for e in world.audit.entries()]  # type: ignore[attr-defined]


def test_fresh_keys_from_one_address_cannot_fill_the_pending_slots(
    world: World, device: DeviceIdentity
) -> None:
    limits = RequestLimits(max_pending=30, max_pending_per_address=8, quiet_after=100)
    desk = desk_with(world, device, limits)
    refusals: list[RequestLimited] = []
    for _ in range(40):  # the whole device's worth of slots, and more, each from a new key
        try:
            desk.submit_request(make_request(KeyBundle.generate("x25519")), NOW, client=FLOODER)
        except RequestLimited as exc:
            refusals.append(exc)
    assert len(refusals) == 32  # 8 accepted
    assert {str(exc) for exc in refusals} == {
        "this client address already has 8 pending requests on this device (the limit is 8); "
        "wait for the owner to decide on them, or try again later"
    }
    assert {exc.retry_after_s for exc in refusals} == {3600}
    # A neighbour's request still gets through, and the owner sees it.
    neighbour = KeyBundle.generate("x25519")
    record = desk.submit_request(make_request(neighbour), NOW, client=NEIGHBOUR)
    pending = desk.list_requests(RequestStatus.PENDING)
    assert record.request_id in {r.request_id for r in pending}
    assert len(pending) == 9


def test_ipv6_addresses_of_one_slash_64_count_as_one(world: World, device: DeviceIdentity) -> None:
    desk = desk_with(world, device, RequestLimits(max_pending_per_address=3))
    for host in range(3):
        desk.submit_request(
            make_request(KeyBundle.generate("x25519")), NOW, client=f"2001:db8:1:2::{host + 1:x}"
        )
    with pytest.raises(RequestLimited, match=r"^this client address already has 3 pending"):
        desk.submit_request(
            make_request(KeyBundle.generate("x25519")), NOW, client="2001:db8:1:2:ffff::9"
        )
    desk.submit_request(make_request(KeyBundle.generate("x25519")), NOW, client="2001:db8:1:3::1")
    assert address_group("2001:db8:1:2:ab::1") == "2001:db8:1:2::/64"
    assert address_group("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_group(None) is None


def test_one_key_holds_few_pending_and_few_per_day(world: World, device: DeviceIdentity) -> None:
    desk = desk_with(world, device, RequestLimits(max_pending_per_key=2, max_per_key_per_day=3))
    requester = KeyBundle.generate("x25519")
    desk.submit_request(make_request(requester), NOW)
    desk.submit_request(make_request(requester), NOW)
    with pytest.raises(RequestLimited, match=r"^this requester key already has 2 pending requests"):
        desk.submit_request(make_request(requester), NOW)
    # Decided requests still count towards the day's share.
    for record in desk.list_requests(RequestStatus.PENDING):
        desk._db.execute(
            "UPDATE requests SET status = 'declined' WHERE request_id = ?", (record.request_id,)
        )
    desk._db.commit()
    desk.submit_request(make_request(requester), NOW)
    with pytest.raises(
        RequestLimited, match=r"^this requester key already has 3 requests in the last 24 hours"
    ):
        desk.submit_request(make_request(requester), NOW)
    desk.submit_request(make_request(requester), NOW + 86400 + 1)


def test_repeated_refusals_are_counted_then_summarised(
    world: World, device: DeviceIdentity, caplog: pytest.LogCaptureFixture
) -> None:
    limits = RequestLimits(max_pending_per_address=1, quiet_after=3, summary_period_s=600)
    desk = desk_with(world, device, limits)
    desk.submit_request(make_request(KeyBundle.generate("x25519")), NOW, client=FLOODER)
    before = len(audit_kinds(world))
    with caplog.at_level(logging.DEBUG, logger="consent.desk"):
        for i in range(50):
            with pytest.raises(RequestLimited):
                desk.submit_request(
                    make_request(KeyBundle.generate("x25519")), NOW + i, client=FLOODER
                )
    # Three refusals on the record one by one, the other 47 only counted.
    assert audit_kinds(world)[before:] == ["consent.refused"] * 3
    refused_lines = [r for r in caplog.records if r.getMessage().startswith("consent.refused ")]
    assert len(refused_lines) == 3
    # Once the period is over, one summary per subject that was quieted: the address, and no
    # key (each key was refused once).
    desk.expire(NOW + 600)
    summaries = [
        e.body()
        for e in world.audit.entries()
        if e.body()["kind"] == "consent.refusals_counted"  # type: ignore[attr-defined]
    ]
    assert [(s["subject_kind"], s["subject"], s["count"]) for s in summaries] == [
        ("address", FLOODER, 47)
    ]
    assert any(
        r.getMessage().startswith("consent.refusals_counted address=") for r in caplog.records
    )
    # A new period starts from zero.
    with pytest.raises(RequestLimited):
        desk.submit_request(make_request(KeyBundle.generate("x25519")), NOW + 700, client=FLOODER)
    assert audit_kinds(world)[-1] == "consent.refused"


def test_the_counter_is_bounded_and_summarises_what_it_drops() -> None:
    counter = RefusalCounter(max_subjects=2)
    for _ in range(3):
        assert counter.refuse([("key", "a")], 0, threshold=1, period_s=60) is (_ == 0)
    counter.refuse([("key", "b")], 1, threshold=1, period_s=60)
    counter.refuse([("key", "c")], 2, threshold=1, period_s=60)  # pushes "a" out
    [dropped] = counter.due(3, period_s=60)
    assert (dropped.subject, dropped.count, dropped.since, dropped.until) == ("a", 2, 0, 2)
    assert counter.due(3, period_s=60) == []


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"^max_pending_per_address must be a positive integer"):
        RequestLimits(max_pending_per_address=0)
