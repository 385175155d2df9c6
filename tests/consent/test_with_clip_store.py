"""Consent against the device's real clip store: the store seals a finished clip in the audit log,
the phone approves from the manifest it finds sealed there, holds keep clips from retention until
the release ends, and the bundle carries the clip manifest the owner approved."""

from __future__ import annotations

import io
from pathlib import Path

import consent.owner
from consent.audit import AuditLog, audit_origin
from consent.audit_verify import AuditVerifier
from consent.clips import ClipSource, StoreFootage
from consent.desk import ConsentDesk
from consent.requester import open_bundle
from crypto.keys import DeviceIdentity, KeyBundle
from device.store import ClipSeal, ClipStore
from tests.consent.kit import HOUR, NOW, Owners, make_request
from tests.device.kit import write_clip


def test_release_from_the_clip_store(
    tmp_path: Path, device: DeviceIdentity, owner: KeyBundle, requester: KeyBundle, owners: Owners
) -> None:
    db = tmp_path / "doorward.db"
    audit = AuditLog(
        db, signer=device.private_key, origin=audit_origin(device.public_key), clock=lambda: NOW
    )

    def sealed(seal: ClipSeal) -> None:
        audit.append(
            "clip.sealed",
            clip_id=seal.clip_id,
            camera=seal.camera,
            segment_count=seal.segment_count,
            manifest_sha256=seal.manifest_sha256,
        )

    store = ClipStore(tmp_path, device, clock=lambda: NOW, on_sealed=sealed)
    assert isinstance(store, ClipSource)
    start = NOW - 3 * HOUR + 60
    plaintexts = [f"segment {index} ".encode() * 500 for index in range(4)]
    clip_id = write_clip(store, owner.age_identity, start_s=start, payloads=plaintexts)

    # The phone audits the log and so learns the manifest the clip was sealed with.
    phone = AuditVerifier(device.public_key, audit.origin, state_path=tmp_path / "phone.checkpoint")
    update = phone.start_update(audit.checkpoint(), [])
    update.add_entries(audit.entries())
    phone.commit(update)

    desk = ConsentDesk(db, device=device, clips=store, audit=audit, owners=owners)
    desk.submit_request(make_request(requester), NOW)
    [request] = desk.pending_requests(NOW)
    footage = StoreFootage(store)
    [pending] = consent.owner.list_pending([request], footage, NOW)
    segments = pending.clips[0][1]
    approval = consent.owner.approve(
        owner.signing_key,
        [owner.age_identity],
        request,
        segments[:2],
        footage,
        device_id=device.device_id,
        device_key=device.public_key,
        sealed=phone.sealed([clip_id]),
        token_id="rel-store",
        now=NOW,
        expires_at_s=NOW + HOUR,
    )
    desk.record_approval(request.request_id, approval.token, approval.manifest, NOW)
    assert store.is_held(clip_id, NOW)
    assert store.apply_retention(NOW + 60, max_age_s=1, max_bytes=0) == []

    desk.authorize_download("rel-store", requester.key_id, NOW)
    assert not store.is_held(clip_id, NOW)
    buf = io.BytesIO()
    desk.write_bundle("rel-store", buf)
    buf.seek(0)
    report = open_bundle(
        buf,
        [requester.age_identity],
        tmp_path / "out",
        requester_key_id=requester.key_id,
        device_key=device.public_key,
    )
    assert report.ok
    assert Path(report.video or "").read_bytes() == plaintexts[0] + plaintexts[1]
    store.close()
