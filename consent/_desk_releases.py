"""Owner decisions on the device: consent, decline and revocation tokens, and the releases made.

Part of :class:`consent.desk.ConsentDesk`; each owner token is used once (table ``consents``).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3

from consent._desk_requests import RequestRecord, _RequestDesk
from consent._release_check import check_release
from consent._release_manifest import parse_release_manifest
from consent.errors import (
    CheckpointMismatch,
    ConsentError,
    ManifestMismatch,
    ReleaseRevoked,
    RequestMismatch,
    RevocationTooLate,
    TokenReplayed,
    UnknownRelease,
)
from consent.models import Release, RequestStatus
from consent.tokens import (
    CONSENT_TYP,
    DECLINE_TYP,
    REVOKE_TYP,
    OwnerToken,
    consent_claims,
    verify_owner_token,
)
from crypto.signed import b64url

# The desk's events keep the one logger name they had before the desk was split into modules.
logger = logging.getLogger("consent.desk")


class _ReleaseDesk(_RequestDesk):
    """Owner decisions in, releases stored and their clips held."""

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
            if claims.checkpoint_size is not None:
                self._check_owner_checkpoint(claims.checkpoint_size, claims.checkpoint_root)
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
            **_checkpoint_field(claims.checkpoint_size),
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

    def releases_for(self, request_id: str) -> list[str]:
        """Ids of the releases made for ``request_id``, oldest first."""
        rows = self._db.execute(
            "SELECT release_id FROM releases WHERE request_id = ? ORDER BY created_s, release_id",
            (request_id,),
        ).fetchall()
        return [r[0] for r in rows]

    def open_releases(self, now: int) -> list[str]:
        """Ids of the releases that may still be downloaded at ``now`` (not revoked, not ended,
        not expired, downloads left), oldest first."""
        rows = self._db.execute(
            "SELECT release_id FROM releases WHERE revoked = 0 AND ended = 0 AND expires_at_s > ? "
            "AND downloads < max_downloads ORDER BY created_s, release_id",
            (now,),
        ).fetchall()
        return [r[0] for r in rows]

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

    def _check_owner_checkpoint(self, size: int, root: bytes | None) -> None:
        """The checkpoint an owner's token carries must be one of this log's tree heads."""
        current = self._audit.size
        if size > current or self._audit.root(size) != root:
            raise CheckpointMismatch(
                f"the consent token carries an audit checkpoint of size {size} that is not a tree "
                f"head of this device's log (size {current}); audit again, then approve"
            )


def _hold_id(release_id: str, clip_id: str) -> str:
    return f"release:{release_id}:{clip_id}"


def _checkpoint_field(size: int | None) -> dict[str, int]:
    """The size of the checkpoint the owner verified, for a ``release.created`` entry."""
    return {} if size is None else {"owner_checkpoint_size": size}
