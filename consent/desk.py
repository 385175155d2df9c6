"""The device's side of consent: take requests, apply the policy, verify owner tokens, count downloads.

Synchronous and single-owner: one :class:`ConsentDesk` per SQLite connection, used from one thread
(the hub runs it in an executor or on the loop; every call is short). Requests, owner tokens and
releases live in tables ``requests``, ``consents`` and ``releases`` of the device database. Every
accepted or refused action is an audit entry; refusals are audited before the error is raised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from consent import bundle as _bundle
from consent._policy import DEFAULT_POLICY, Policy, decide
from consent._release_check import check_release
from consent._release_manifest import parse_release_manifest
from consent._tables import SCHEMA
from consent.clips import ClipSource
from consent.errors import (
    ConsentError,
    DownloadsExhausted,
    ManifestMismatch,
    PolicyInvalid,
    PolicyRefused,
    ReleaseRevoked,
    RequestInvalid,
    RequestMismatch,
    RevocationTooLate,
    TokenExpired,
    TokenReplayed,
    UnknownRelease,
    UnknownRequest,
    WrongRequester,
)
from consent.models import (
    ConsentRequest,
    Decision,
    PairedOwner,
    PastRequest,
    Release,
    RequestStatus,
)
from consent.policy_doc import verify_policy
from consent.requests import request_id_of, verify_request
from consent.tokens import (
    CONSENT_TYP,
    DECLINE_TYP,
    REVOKE_TYP,
    OwnerToken,
    consent_claims,
    verify_owner_token,
)
from crypto.keys import DeviceIdentity
from crypto.signed import b64url, b64url_decode

__all__ = ["AuditSink", "ConsentDesk", "RequestRecord"]

logger = logging.getLogger(__name__)

MAX_PENDING = 500  # a flood of requests from many keys cannot grow the table without bound
_DAY_S = 86400
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


class ConsentDesk:
    """Device-side consent: requests in, owner decisions in, releases out."""

    def __init__(
        self,
        db: sqlite3.Connection | Path | str,
        *,
        device: DeviceIdentity,
        clips: ClipSource,
        audit: AuditSink,
        owners: Callable[[], Iterable[PairedOwner]],
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        self._db = db if isinstance(db, sqlite3.Connection) else sqlite3.connect(db)
        self._db.executescript(SCHEMA)
        self._db.commit()
        self._device = device
        self._clips = clips
        self._audit = audit
        self._owners = owners
        self._default_policy = policy
        self._warned: set[tuple[str, str]] = set()

    # -- requests ---------------------------------------------------------------------------

    def submit_request(self, token: str | bytes, now: int) -> RequestRecord:
        """Verify a request and apply the policy; raise PolicyRefused if it declines (the refusal
        is stored and audited), else store the request as pending."""
        try:
            request = verify_request(token, now)
            if self._request_row(request.request_id) is not None:
                raise RequestInvalid(f"request {request.request_id} was already received")
            pending = self._db.execute(
                "SELECT COUNT(*) FROM requests WHERE status = ? AND expires_at_s > ?",
                (RequestStatus.PENDING.value, now),
            ).fetchone()[0]
            if pending >= MAX_PENDING:
                raise RequestInvalid(f"too many pending requests ({pending}); try again later")
        except ConsentError as exc:
            self._refused("request", exc, request_id=_token_id(token))
            raise
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
            "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request.request_id,
                _text(token),
                request.requester_key_id,
                now,
                request.expires_at_s,
                status.value,
                decision.rule,
                decision.reason or None,
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
        return verify_request(self.request_token(request_id), self.request(request_id).received_s)

    def releases_for(self, request_id: str) -> list[str]:
        """Ids of the releases made for ``request_id``, oldest first."""
        rows = self._db.execute(
            "SELECT release_id FROM releases WHERE request_id = ? ORDER BY created_s, release_id",
            (request_id,),
        ).fetchall()
        return [r[0] for r in rows]

    def pending_requests(self, now: int) -> list[ConsentRequest]:
        """The verified pending requests, for an owner's phone to list."""
        rows = self._db.execute(
            "SELECT token, received_s FROM requests WHERE status = ? AND expires_at_s > ?",
            (RequestStatus.PENDING.value, now),
        ).fetchall()
        return [verify_request(token, received_s) for token, received_s in rows]

    def decision_for(self, request_id: str) -> Decision:
        """The policy's (or owner's) stored decision on a request."""
        record = self.request(request_id)
        if record.status in (RequestStatus.AUTO_DECLINED, RequestStatus.DECLINED):
            return Decision.decline(record.rule or "owner", record.reason or "")
        return Decision.ask()

    # -- owner decisions --------------------------------------------------------------------

    def record_approval(self, request_id: str, token: str, manifest: bytes, now: int) -> Release:
        """Verify an owner's consent token and manifest for ``request_id``; store the release,
        hold its clips from retention until it ends, and audit it."""
        try:
            verified = self._owner_token(token, CONSENT_TYP, now)
            claims = consent_claims(verified)
            request = self._pending_request(request_id, claims.request_id, now)
            if claims.subject != request.requester_key_id:
                raise RequestMismatch(
                    f"token is for requester {claims.subject!r}, the request is from "
                    f"{request.requester_key_id!r}"
                )
            if hashlib.sha256(manifest).hexdigest() != claims.manifest_sha256:
                raise ManifestMismatch(
                    "release manifest does not match the hash the owner signed; "
                    "it was altered after signing"
                )
            parsed = parse_release_manifest(manifest)
            clip_manifests = check_release(parsed, request, self._clips, self._device.device_id)
        except ConsentError as exc:
            self._refused("consent", exc, request_id=request_id)
            raise
        release_id = claims.token_id
        entry = self._audit.append(
            "release.created",
            release_id=release_id,
            request_id=request_id,
            owner=verified.owner.key_id,
            requester=claims.subject,
            manifest_sha256=claims.manifest_sha256,
            segments=len(parsed.segments),
            expires=claims.expires_at_s,
            max_downloads=claims.max_downloads,
            disclosures=sorted(claims.disclosures),
        )
        with self._db:
            self._use_token(verified, now)
            self._db.execute(
                "UPDATE requests SET status = ? WHERE request_id = ?",
                (RequestStatus.APPROVED.value, request_id),
            )
            self._db.execute(
                "INSERT INTO releases (release_id, request_id, token, manifest, owner_key_id, "
                "owner_public, requester_key_id, expires_at_s, max_downloads, audit_index, "
                "audit_leaf, clip_manifests, created_s) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    release_id,
                    request_id,
                    token,
                    manifest,
                    verified.owner.key_id,
                    b64url(verified.owner.signing_public.public_bytes_raw()),
                    claims.subject,
                    claims.expires_at_s,
                    claims.max_downloads,
                    entry.index,
                    entry.leaf,
                    clip_manifests,
                    now,
                ),
            )
        self._audit.append("request.approved", request_id=request_id, release_id=release_id)
        for clip_id in parsed.clip_manifests:
            self._clips.hold(clip_id, _hold_id(release_id, clip_id), claims.expires_at_s)
        logger.info("consent.release_created release_id=%s request_id=%s", release_id, request_id)
        return self.release(release_id)

    def record_decline(self, request_id: str, token: str, now: int) -> RequestRecord:
        """Verify an owner's signed decline for a pending request, store and audit it."""
        try:
            verified = self._owner_token(token, DECLINE_TYP, now)
            self._pending_request(request_id, verified.claims["request_id"], now)
        except ConsentError as exc:
            self._refused("decline", exc, request_id=request_id)
            raise
        reason = verified.claims["reason"]
        with self._db:
            self._use_token(verified, now)
            self._db.execute(
                "UPDATE requests SET status = ?, rule = ?, reason = ? WHERE request_id = ?",
                (RequestStatus.DECLINED.value, "owner", reason, request_id),
            )
        self._audit.append(
            "request.declined", request_id=request_id, owner=verified.owner.key_id, reason=reason
        )
        return self.request(request_id)

    def revoke(self, release_id: str, token: str, now: int) -> Release:
        """Verify an owner's signed revocation and withdraw a release not yet downloaded."""
        try:
            verified = self._owner_token(token, REVOKE_TYP, now)
            if verified.claims["release_id"] != release_id:
                raise RequestMismatch(
                    f"revocation is for release {verified.claims['release_id']!r}, "
                    f"not {release_id!r}"
                )
            release = self.release(release_id)
            if release.revoked:
                raise ReleaseRevoked(f"release {release_id} is already revoked")
            if release.downloads > 0:
                raise RevocationTooLate(
                    f"release {release_id} was already downloaded {release.downloads} time(s); "
                    "a release cannot be unsent"
                )
        except ConsentError as exc:
            self._refused("revoke", exc, release_id=release_id)
            raise
        with self._db:
            self._use_token(verified, now)
            self._db.execute("UPDATE releases SET revoked = 1 WHERE release_id = ?", (release_id,))
        self._end_holds(release)
        self._audit.append("release.revoked", release_id=release_id, owner=verified.owner.key_id)
        return self.release(release_id)

    # -- downloads --------------------------------------------------------------------------

    def authorize_download(self, release_id: str, requester_key_id: str, now: int) -> Release:
        """Count one download of ``release_id`` by the key that signed the fetch; refuse (and
        audit) a wrong key, a revoked or expired release, or one already fully downloaded."""
        try:
            release = self.release(release_id)
            if requester_key_id != release.requester_key_id:
                raise WrongRequester(
                    f"release {release_id} is for requester {release.requester_key_id!r}, "
                    f"the fetch was signed by {requester_key_id[:64]!r}"
                )
            if release.revoked:
                raise ReleaseRevoked(f"release {release_id} was revoked by an owner")
            if release.expires_at_s <= now:
                raise TokenExpired(f"release {release_id} expired at {release.expires_at_s}")
            if release.downloads >= release.max_downloads:
                raise DownloadsExhausted(
                    f"release {release_id} was downloaded {release.downloads} of "
                    f"{release.max_downloads} allowed time(s)"
                )
        except ConsentError as exc:
            self._refused("download", exc, release_id=release_id)
            raise
        with self._db:
            self._db.execute(
                "UPDATE releases SET downloads = downloads + 1 WHERE release_id = ?", (release_id,)
            )
        self._audit.append(
            "release.downloaded",
            release_id=release_id,
            requester=requester_key_id,
            download=release.downloads + 1,
        )
        updated = self.release(release_id)
        if updated.downloads >= updated.max_downloads:
            self._end_holds(updated)
        return updated

    def write_bundle(self, release_id: str, dst: BinaryIO) -> None:
        """Stream the release bundle (a tar) to ``dst``; call after :meth:`authorize_download`."""
        row = self._release_row(release_id)
        size = self._audit.size
        checkpoint = self._audit.checkpoint()
        proof = self._audit.inclusion_proof(row["audit_index"], size)
        _bundle.write_bundle(
            dst,
            device=self._device,
            release_id=release_id,
            token=row["token"],
            manifest=bytes(row["manifest"]),
            owner_key_id=row["owner_key_id"],
            owner_public=row["owner_public"],
            clips=self._clips,
            clip_manifests={
                clip_id: b64url_decode(text)
                for clip_id, text in json.loads(row["clip_manifests"]).items()
            },
            checkpoint=checkpoint,
            leaf=bytes(row["audit_leaf"]),
            leaf_index=row["audit_index"],
            tree_size=size,
            proof=proof,
        )

    def release(self, release_id: str) -> Release:
        """The stored release ``release_id``; raises UnknownRelease."""
        row = self._release_row(release_id)
        parsed = parse_release_manifest(bytes(row["manifest"]))
        return Release(
            release_id=row["release_id"],
            request_id=row["request_id"],
            owner_key_id=row["owner_key_id"],
            requester_key_id=row["requester_key_id"],
            expires_at_s=row["expires_at_s"],
            max_downloads=row["max_downloads"],
            downloads=row["downloads"],
            revoked=bool(row["revoked"]),
            segment_ids=tuple(s.segment_id for s in parsed.segments),
            clip_ids=tuple(sorted(parsed.clip_manifests)),
            audit_index=row["audit_index"],
        )

    def expire(self, now: int) -> list[str]:
        """Mark pending requests past their expiry as expired, and end the releases past theirs
        (their clip holds are lifted, each audited once as ``release.expired``). Returns the ids
        of the releases that ended; the hub calls this periodically."""
        with self._db:
            self._db.execute(
                "UPDATE requests SET status = ? WHERE status = ? AND expires_at_s <= ?",
                (RequestStatus.EXPIRED.value, RequestStatus.PENDING.value, now),
            )
        rows = self._db.execute(
            "SELECT release_id FROM releases WHERE ended = 0 AND expires_at_s <= ?", (now,)
        ).fetchall()
        for (release_id,) in rows:
            self._end_holds(self.release(release_id))
            self._audit.append("release.expired", release_id=release_id)
        return [release_id for (release_id,) in rows]

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

    # -- internals --------------------------------------------------------------------------

    def _owner_token(self, token: str, typ: str, now: int) -> OwnerToken:
        verified = verify_owner_token(
            token, typ=typ, owners=list(self._owners()), device_id=self._device.device_id, now=now
        )
        seen = self._db.execute(
            "SELECT 1 FROM consents WHERE token_id = ?", (verified.token_id,)
        ).fetchone()
        if seen is not None:
            raise TokenReplayed(f"token {verified.token_id!r} was already used")
        return verified

    def _use_token(self, verified: OwnerToken, now: int) -> None:
        subject = verified.claims.get("request_id") or verified.claims.get("release_id") or ""
        self._db.execute(
            "INSERT INTO consents VALUES (?, ?, ?, ?, ?)",
            (verified.token_id, "owner", verified.owner.key_id, subject, now),
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
        return verify_request(row["token"], row["received_s"])

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

    def _release_row(self, release_id: str) -> sqlite3.Row:
        cursor = self._db.execute("SELECT * FROM releases WHERE release_id = ?", (release_id,))
        cursor.row_factory = sqlite3.Row
        row: sqlite3.Row | None = cursor.fetchone()
        if row is None:
            raise UnknownRelease(f"no release with id {release_id[:64]!r}")
        return row

    def _end_holds(self, release: Release) -> None:
        for clip_id in release.clip_ids:
            self._clips.release_hold(_hold_id(release.release_id, clip_id))
        with self._db:
            self._db.execute(
                "UPDATE releases SET ended = 1 WHERE release_id = ?", (release.release_id,)
            )

    def _refused(self, what: str, exc: ConsentError, **ids: str) -> None:
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


def _hold_id(release_id: str, clip_id: str) -> str:
    return f"release:{release_id}:{clip_id}"


def _text(token: str | bytes) -> str:
    return token if isinstance(token, str) else token.decode("ascii")


def _token_id(token: str | bytes) -> str:
    """A request id for the audit entry of a refused request, when the token is text at all."""
    try:
        return request_id_of(_text(token))
    except (UnicodeError, AttributeError):
        return "-"
