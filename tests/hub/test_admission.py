"""Which connections the server keeps: the per-address cap, eviction of the oldest stranger when
full (not a young one for a stranger), trusted connections and addresses, and the bound on
connections still being closed."""

from __future__ import annotations

import pytest

from hub.server.admission import Admission, Admitted, Refusal, Refused


def _ids(decisions: list[Admitted | Refused]) -> list[int]:
    return [d.conn_id for d in decisions if isinstance(d, Admitted)]


def test_an_address_past_its_cap_is_refused_others_are_not() -> None:
    admission = Admission(capacity=100, per_address=3)
    assert len(_ids([admission.admit("10.0.0.5", now_s=0) for _ in range(3)])) == 3
    assert admission.admit("10.0.0.5", now_s=0) == Refused(Refusal.PER_ADDRESS)
    assert isinstance(admission.admit("10.0.0.6", now_s=0), Admitted)
    assert admission.untrusted_from("10.0.0.5") == 3


def test_a_released_connection_frees_its_place() -> None:
    admission = Admission(capacity=100, per_address=1)
    first = admission.admit("10.0.0.5", now_s=0)
    assert isinstance(first, Admitted)
    assert admission.admit("10.0.0.5", now_s=0) == Refused(Refusal.PER_ADDRESS)
    admission.release(first.conn_id)
    admission.release(first.conn_id)  # twice is harmless
    assert isinstance(admission.admit("10.0.0.5", now_s=0), Admitted)
    assert len(admission) == 1


def test_a_full_server_evicts_the_oldest_stranger() -> None:
    admission = Admission(capacity=3, per_address=10)
    ids = _ids([admission.admit(f"10.0.0.{i}", now_s=0) for i in range(3)])
    newcomer = admission.admit("10.0.0.9", now_s=1)
    assert isinstance(newcomer, Admitted)
    assert newcomer.evicted == ids[0]
    # The evicted one still counts until its socket is closed.
    assert (len(admission), admission.closing) == (4, 1)
    admission.release(ids[0])
    assert (len(admission), admission.closing) == (3, 0)


def test_trusted_connections_are_never_evicted() -> None:
    admission = Admission(capacity=2, per_address=10)
    owner, stranger = _ids(
        [admission.admit("10.0.0.1", now_s=0), admission.admit("10.0.0.2", now_s=0)]
    )
    admission.trust(owner, now_s=0)
    first = admission.admit("10.0.0.3", now_s=5)
    assert isinstance(first, Admitted)
    assert first.evicted == stranger
    admission.release(stranger)
    second = admission.admit("10.0.0.4", now_s=10)
    assert isinstance(second, Admitted)
    assert second.evicted == first.conn_id  # not the owner's, though it is older
    admission.release(first.conn_id)
    admission.trust(second.conn_id, now_s=10)
    assert admission.admit("10.0.0.5", now_s=20) == Refused(Refusal.FULL)


def test_a_stranger_does_not_evict_a_young_stranger_but_an_owner_does() -> None:
    admission = Admission(capacity=2, per_address=10, min_age_s=1.0)
    owner = admission.admit("10.0.0.1", now_s=0)
    assert isinstance(owner, Admitted)
    admission.trust(owner.conn_id, now_s=0)
    admission.release(owner.conn_id)  # the phone closed; its address stays known
    ids = _ids([admission.admit(f"10.0.0.{i}", now_s=10) for i in (2, 3)])
    assert admission.admit("10.0.0.4", now_s=10.5) == Refused(Refusal.FULL)
    back = admission.admit("10.0.0.1", now_s=10.5)
    assert isinstance(back, Admitted)
    assert back.evicted == ids[0]
    admission.release(ids[0])
    late = admission.admit("10.0.0.4", now_s=11.5)  # the other stranger had its second
    assert isinstance(late, Admitted)
    assert late.evicted == ids[1]


def test_an_owners_address_may_pass_its_cap_for_a_while() -> None:
    admission = Admission(capacity=100, per_address=2, trusted_address_s=60)
    first, _ = _ids([admission.admit("10.0.0.1", now_s=0) for _ in range(2)])
    assert admission.admit("10.0.0.1", now_s=0) == Refused(Refusal.PER_ADDRESS)
    admission.trust(first, now_s=0)
    assert isinstance(admission.admit("10.0.0.1", now_s=10), Admitted)
    assert isinstance(admission.admit("10.0.0.1", now_s=10), Admitted)
    assert admission.admit("10.0.0.1", now_s=61) == Refused(Refusal.PER_ADDRESS)


def test_connections_being_closed_are_bounded() -> None:
    admission = Admission(capacity=4, per_address=100, max_closing=2)
    for i in range(4):
        admission.admit(f"10.0.0.{i}", now_s=0)
    evictions = [admission.admit("10.0.1.1", now_s=5) for _ in range(3)]
    assert [isinstance(d, Admitted) for d in evictions] == [True, True, False]
    assert evictions[2] == Refused(Refusal.FULL)
    assert len(admission) == 4 + 2  # never more than capacity + max_closing


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match=r"^capacity must be at least 1, got 0$"):
        Admission(capacity=0, per_address=1)
    with pytest.raises(ValueError, match=r"^per_address must be at least 1, got 0$"):
        Admission(capacity=1, per_address=0)
