"""The device's side of consent: take requests, apply the policy, verify owner tokens, count downloads.

Synchronous and single-owner: one :class:`ConsentDesk` per SQLite connection, used from one thread
(the hub runs it in an executor or on the loop; every call is short). Requests, owner tokens and
releases live in tables ``requests``, ``consents`` and ``releases`` of the device database. Every
accepted or refused action is an audit entry; refusals are audited before the error is raised.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from consent import bundle as _bundle
from consent import jws
from consent._desk_releases import _ReleaseDesk
from consent._desk_requests import AuditSink, RequestRecord
from consent._policy import DEFAULT_POLICY, Policy
from consent._refusals import RefusalCounter
from consent._request_limits import RequestLimits, address_group
from consent._tables import SCHEMA, migrate
from consent.clips import ClipSource
from consent.errors import (
    ConsentError,
    DownloadsExhausted,
    ReleaseRevoked,
    TokenExpired,
    WrongRequester,
)
from consent.models import PairedOwner, Release, RequestStatus
from consent.tokens import CONSENT_TYP
from crypto.keys import DeviceIdentity
from crypto.signed import b64url_decode

__all__ = ["AuditSink", "ConsentDesk", "RequestLimits", "RequestRecord", "address_group"]


class ConsentDesk(_ReleaseDesk):
    """Device-side consent: requests in, owner decisions in, releases out."""

    # Requests and the policy: consent._desk_requests; owner decisions and releases:
    # consent._desk_releases; downloads and expiry: here.

    def __init__(
        self,
        db: sqlite3.Connection | Path | str,
        *,
        device: DeviceIdentity,
        clips: ClipSource,
        audit: AuditSink,
        owners: Callable[[], Iterable[PairedOwner]],
        policy: Policy = DEFAULT_POLICY,
        limits: RequestLimits | None = None,
    ) -> None:
        self._db = db if isinstance(db, sqlite3.Connection) else sqlite3.connect(db)
        self._db.executescript(SCHEMA)
        migrate(self._db)
        self._db.commit()
        self._device = device
        self._clips = clips
        self._audit = audit
        self._owners = owners
        self._default_policy = policy
        self._warned: set[tuple[str, str]] = set()
        self._limits = limits or RequestLimits()
        self._refusals = RefusalCounter()

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
            subjects = [("key", requester_key_id)]
            self._refused("download", exc, now=now, subjects=subjects, release_id=release_id)
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
        owner_checkpoint = jws.decode_compact(row["token"], typ=CONSENT_TYP).claims.get(
            "checkpoint"
        )
        consistency = None
        if isinstance(owner_checkpoint, dict):
            old_size = owner_checkpoint["size"]
            consistency = (old_size, self._audit.consistency_proof(old_size, size))
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
            consistency=consistency,
        )

    def expire(self, now: int) -> list[str]:
        """Mark pending requests past their expiry as expired, and end the releases past theirs
        (their clip holds are lifted, each audited once as ``release.expired``). Returns the ids
        of the releases that ended; the hub calls this periodically. Refusals that were only
        counted are summarised here too, once their period is over."""
        self.summarise_refusals(now)
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
