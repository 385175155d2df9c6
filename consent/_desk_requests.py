"""Requests on the device: intake, the owner's policy in force, and the stored request records.

The base of :class:`consent.desk.ConsentDesk` (see there for the threading and storage contract);
refusals are audited and logged here for every part of the desk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from consent._policy import Policy, decide
from consent._refusals import RefusalCounter
from consent._request_limits import DAY_S, RequestLimits, address_group
from consent.clips import ClipSource
from consent.errors import (
    ConsentError,
    PolicyInvalid,
    PolicyRefused,
    RequestInvalid,
    RequestLimited,
    RequestMismatch,
    UnknownRequest,
)
from consent.models import (
    ConsentRequest,
    Decision,
    PairedOwner,
    PastRequest,
    RequestStatus,
)
from consent.policy_doc import verify_policy
from consent.requests import request_id_of, verify_request
from crypto.keys import DeviceIdentity

# The desk's events keep the one logger name they had before the desk was split into modules.
logger = logging.getLogger("consent.desk")

MAX_PENDING = RequestLimits().max_pending  # the default; ``RequestLimits`` sets the device's
_DAY_S = DAY_S
_MAX_WARNED = 256  # distinct (action, error) pairs remembered for log rate limiting


class AuditEntryLike(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def leaf(self) -> bytes: ...


class AuditSink(Protocol):
    """The part of ``consent.audit.AuditLog`` the device side uses."""

    def append(self, kind: str, **fields: Any) -> AuditEntryLike: ...
    def checkpoint(self) -> str: ...
    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]: ...
    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]: ...
    def root(self, size: int | None = None) -> bytes: ...
    @property
    def size(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """A request as stored on the device, with where it stands."""

    request_id: str
    requester_key_id: str
    received_s: int
    expires_at_s: int
    status: RequestStatus
    rule: str | None
    reason: str | None
    # True when this submission repeated one already received: nothing new was recorded.
    repeated: bool = False


class _RequestDesk:
    """Requests in, the policy applied; state is set up by ``ConsentDesk.__init__``."""

    _db: sqlite3.Connection
    _device: DeviceIdentity
    _clips: ClipSource
    _audit: AuditSink
    _owners: Callable[[], Iterable[PairedOwner]]
    _default_policy: Policy
    _warned: set[tuple[str, str]]
    _limits: RequestLimits
    _refusals: RefusalCounter

    # -- requests ---------------------------------------------------------------------------

    def submit_request(
        self, token: str | bytes, now: int, *, client: str | None = None
    ) -> RequestRecord:
        """Verify a request, check the limits for its key and ``client`` address, and apply the
        policy; raise PolicyRefused if it declines (the refusal is stored and audited), or
        RequestLimited / RequestInvalid, else store the request as pending.

        The very same token sent again (a requester retrying after its answer was lost) records
        nothing: it gets the stored request back (``repeated``), or the policy's refusal again."""
        group = address_group(client)
        subjects = [("address", group)] if group else []
        try:
            request = verify_request(token, now)
            subjects.insert(0, ("key", request.requester_key_id))
            row = self._request_row(request.request_id)
            if row is not None and row["token"] != _text(token):
                raise RequestInvalid(f"request {request.request_id} was already received")
            if row is None:
                self._check_limits(request.requester_key_id, group, now)
        except ConsentError as exc:
            self._refused("request", exc, now=now, subjects=subjects, request_id=_token_id(token))
            raise
        if row is not None:  # outside the try: a repeat is not audited as a refusal
            return self._repeated(_record(row))
        self._audit.append(
            "request.received",
            request_id=request.request_id,
            requester=request.requester_key_id,
            requester_kind=request.identity.kind,
            camera=request.camera,
            window_start=request.window_start_s,
            window_end=request.window_end_s,
            category=request.category,
            legal_basis=request.legal_basis,
            case_reference=request.case_reference,
        )
        decision = decide(request, self.policy(), self._history(request, now), now)
        status = RequestStatus.AUTO_DECLINED if decision.declined else RequestStatus.PENDING
        self._db.execute(
            "INSERT INTO requests (request_id, token, requester_key_id, received_s, expires_at_s, "
            "status, rule, reason, client) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request.request_id,
                _text(token),
                request.requester_key_id,
                now,
                request.expires_at_s,
                status.value,
                decision.rule,
                decision.reason or None,
                group,
            ),
        )
        self._db.commit()
        record = self.request(request.request_id)
        if decision.declined:
            assert decision.rule is not None
            self._audit.append(
                "request.auto_declined",
                request_id=request.request_id,
                rule=decision.rule,
                reason=decision.reason,
            )
            logger.info(
                "consent.auto_declined request_id=%s rule=%s", request.request_id, decision.rule
            )
            raise PolicyRefused(
                f"request {request.request_id} declined by the owner's policy: {decision.reason}",
                rule=decision.rule,
            )
        self._audit.append("request.pending", request_id=request.request_id)
        logger.info("consent.pending request_id=%s", request.request_id)
        return record

    def _repeated(self, record: RequestRecord) -> RequestRecord:
        logger.info("consent.request_repeated request_id=%s", record.request_id)
        if record.status is RequestStatus.AUTO_DECLINED:
            raise PolicyRefused(
                f"request {record.request_id} declined by the owner's policy: {record.reason}",
                rule=record.rule or "",
            )
        return dataclasses.replace(record, repeated=True)

    def request(self, request_id: str) -> RequestRecord:
        """The stored request ``request_id``; raises UnknownRequest if there is none."""
        row = self._request_row(request_id)
        if row is None:
            raise UnknownRequest(f"no request with id {request_id[:64]!r}")
        return _record(row)

    def list_requests(self, status: RequestStatus | None = None) -> list[RequestRecord]:
        """Stored requests, newest first, optionally only those with ``status``."""
        sql = "SELECT * FROM requests"
        args: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            args = (status.value,)
        cursor = self._db.execute(sql + " ORDER BY received_s DESC, request_id", args)
        cursor.row_factory = sqlite3.Row
        return [_record(r) for r in cursor.fetchall()]

    def request_token(self, request_id: str) -> str:
        """The request exactly as the requester signed it, for a phone to verify by itself."""
        row = self._request_row(request_id)
        if row is None:
            raise UnknownRequest(f"no request with id {request_id[:64]!r}")
        return str(row["token"])

    def stored_request(self, request_id: str) -> ConsentRequest:
        """The verified request ``request_id`` (re-verified as of when it arrived)."""
        return verify_request(
            self.request_token(request_id), self.request(request_id).received_s, strict_text=False
        )

    def pending_requests(self, now: int) -> list[ConsentRequest]:
        """The verified pending requests, for an owner's phone to list."""
        rows = self._db.execute(
            "SELECT token, received_s FROM requests WHERE status = ? AND expires_at_s > ?",
            (RequestStatus.PENDING.value, now),
        ).fetchall()
        return [verify_request(token, received_s, strict_text=False) for token, received_s in rows]

    def decision_for(self, request_id: str) -> Decision:
        """The policy's (or owner's) stored decision on a request."""
        record = self.request(request_id)
        if record.status in (RequestStatus.AUTO_DECLINED, RequestStatus.DECLINED):
            return Decision.decline(record.rule or "owner", record.reason or "")
        return Decision.ask()

    # -- policy -----------------------------------------------------------------------------

    def policy(self) -> Policy:
        """The policy in force: the last owner-signed one, else the default."""
        row = self._db.execute("SELECT document FROM consent_policy WHERE id = 1").fetchone()
        if row is None:
            return self._default_policy
        return verify_policy(row[0], list(self._owners()), ignore_removed=True).policy

    def set_policy(self, document: str, now: int) -> Policy:
        """Install an owner-signed policy document (see ``consent.policy_doc``) and audit it."""
        try:
            signed = verify_policy(document, list(self._owners()))
            if signed.device_id != self._device.device_id:
                raise PolicyInvalid(f"policy is for device {signed.device_id[:64]!r}, not this one")
            row = self._db.execute("SELECT issued_at_s FROM consent_policy WHERE id = 1").fetchone()
            if row is not None and signed.issued_at_s <= row[0]:
                raise PolicyInvalid(
                    f"policy issued at {signed.issued_at_s} is not newer than the one in force "
                    f"({row[0]}); an old policy cannot be replayed"
                )
        except ConsentError as exc:
            self._refused("policy", exc)
            raise
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO consent_policy VALUES (1, ?, ?)",
                (document, signed.issued_at_s),
            )
        self._audit.append(
            "policy.changed",
            owner=signed.owner_key_id,
            policy_sha256=hashlib.sha256(document.encode()).hexdigest(),
        )
        return signed.policy

    def summarise_refusals(self, now: int) -> None:
        """Audit (and log) one summary per key or address whose refusals were only counted in a
        period that has ended; the hub calls this periodically (``ConsentDesk.expire``)."""
        for summary in self._refusals.due(now, period_s=self._limits.summary_period_s):
            self._audit.append(
                "consent.refusals_counted",
                subject_kind=summary.kind,
                subject=summary.subject[:128],
                count=summary.count,
                since=summary.since,
                until=summary.until,
            )
            logger.warning(
                "consent.refusals_counted %s=%s count=%d since=%d",
                summary.kind,
                summary.subject[:128],
                summary.count,
                summary.since,
            )

    # -- internals --------------------------------------------------------------------------

    def _check_limits(self, key_id: str, group: str | None, now: int) -> None:
        """Raise RequestLimited if this key or address group already holds its share."""
        limits = self._limits
        pending = RequestStatus.PENDING.value
        day_ago = now - _DAY_S
        counts = [
            (
                "this requester key",
                "SELECT COUNT(*) FROM requests WHERE requester_key_id = ? AND status = ? "
                "AND expires_at_s > ?",
                (key_id, pending, now),
                limits.max_pending_per_key,
                "pending requests",
            ),
            (
                "this requester key",
                "SELECT COUNT(*) FROM requests WHERE requester_key_id = ? AND received_s > ?",
                (key_id, day_ago),
                limits.max_per_key_per_day,
                "requests in the last 24 hours",
            ),
        ]
        if group is not None:
            counts += [
                (
                    "this client address",
                    "SELECT COUNT(*) FROM requests WHERE client = ? AND status = ? "
                    "AND expires_at_s > ?",
                    (group, pending, now),
                    limits.max_pending_per_address,
                    "pending requests",
                ),
                (
                    "this client address",
                    "SELECT COUNT(*) FROM requests WHERE client = ? AND received_s > ?",
                    (group, day_ago),
                    limits.max_per_address_per_day,
                    "requests in the last 24 hours",
                ),
            ]
        for who, sql, args, cap, what in counts:
            held = self._db.execute(sql, args).fetchone()[0]
            if held >= cap:
                retry_s = 3600 if what == "pending requests" else _DAY_S
                raise RequestLimited(
                    f"{who} already has {held} {what} on this device (the limit is {cap}); "
                    "wait for the owner to decide on them, or try again later",
                    retry_after_s=retry_s,
                )
        total = self._db.execute(
            "SELECT COUNT(*) FROM requests WHERE status = ? AND expires_at_s > ?", (pending, now)
        ).fetchone()[0]
        if total >= limits.max_pending:
            raise RequestLimited(
                f"the device holds {total} pending requests, its limit; try again later",
                retry_after_s=3600,
            )

    def _pending_request(self, request_id: str, claimed_id: str, now: int) -> ConsentRequest:
        if claimed_id != request_id:
            raise RequestMismatch(
                f"token is for request {claimed_id!r}, presented for request {request_id!r}"
            )
        row = self._request_row(request_id)
        if row is None:
            raise RequestMismatch(f"no request with id {request_id[:64]!r}")
        if row["status"] != RequestStatus.PENDING.value:
            raise RequestMismatch(f"request {request_id} is {row['status']}, not pending")
        if row["expires_at_s"] <= now:
            raise RequestMismatch(f"request {request_id} expired at {row['expires_at_s']}")
        # Verified when it arrived; re-verify at that moment to rebuild the record.
        return verify_request(row["token"], row["received_s"], strict_text=False)

    def _history(self, request: ConsentRequest, now: int) -> Sequence[PastRequest]:
        rows = self._db.execute(
            "SELECT requester_key_id, received_s FROM requests "
            "WHERE requester_key_id = ? AND received_s > ?",
            (request.requester_key_id, now - _DAY_S),
        ).fetchall()
        return [PastRequest(k, t) for k, t in rows]

    def _request_row(self, request_id: str) -> sqlite3.Row | None:
        cursor = self._db.execute("SELECT * FROM requests WHERE request_id = ?", (request_id,))
        cursor.row_factory = sqlite3.Row
        row: sqlite3.Row | None = cursor.fetchone()
        return row

    def _refused(
        self,
        what: str,
        exc: ConsentError,
        *,
        now: int | None = None,
        subjects: list[tuple[str, str]] | None = None,
        **ids: str,
    ) -> None:
        if now is not None and subjects:
            limits = self._limits
            recorded = self._refusals.refuse(
                subjects, now, threshold=limits.quiet_after, period_s=limits.summary_period_s
            )
            if not recorded:
                return  # counted; summarised by expire() once its period is over
        self._audit.append(
            "consent.refused",
            action=what,
            error=type(exc).__name__,
            reason=str(exc)[:500],
            **{k: v[:128] for k, v in ids.items()},
        )
        # Peer misbehaviour: the first of each kind at WARNING, repeats at DEBUG (a hostile
        # requester must not be able to flood the log; the audit entry is the full record).
        kind = (what, type(exc).__name__)
        level = logging.DEBUG if kind in self._warned else logging.WARNING
        if len(self._warned) < _MAX_WARNED:
            self._warned.add(kind)
        logger.log(level, "consent.refused action=%s error=%s", what, type(exc).__name__)


def _record(row: sqlite3.Row) -> RequestRecord:
    return RequestRecord(
        request_id=row["request_id"],
        requester_key_id=row["requester_key_id"],
        received_s=row["received_s"],
        expires_at_s=row["expires_at_s"],
        status=RequestStatus(row["status"]),
        rule=row["rule"],
        reason=row["reason"],
    )


def _text(token: str | bytes) -> str:
    return token if isinstance(token, str) else token.decode("ascii")


def _token_id(token: str | bytes) -> str:
    """A request id for the audit entry of a refused request, when the token is text at all."""
    try:
        return request_id_of(_text(token))
    except (UnicodeError, AttributeError):
        return "-"
