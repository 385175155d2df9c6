"""Consent tokens carry the audit checkpoint the owner verified; the device and the requester check
the release against it, so consent given on one view of the log cannot be released in another."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from pathlib import Path

import pytest

import consent.owner
from consent import jws
from consent._merkle import encode_proof
from consent.audit import AuditLog, audit_origin
from consent.audit_verify import AuditVerifier, Checkpoint
from consent.bundle import bundle_root
from consent.desk import ConsentDesk
from consent.errors import BundleInvalid, CheckpointMismatch, TokenInvalid
from consent.requester import open_bundle
from consent.tokens import CONSENT_TYP, consent_claims, verify_owner_token
from crypto.keys import DeviceIdentity, KeyBundle
from crypto.signed import b64url_decode
from tests.consent.kit import NOW, World, approve_first_segment, make_request


def owner_view(world: World, device: DeviceIdentity) -> Checkpoint:
    """The owner's phone audits the device's log and keeps what it verified."""
    verifier = AuditVerifier(device.public_key, audit_origin(device.public_key))
    update = verifier.start_update(world.audit.checkpoint(), [])  # type: ignore[attr-defined]
    update.add_entries(world.audit.entries())  # type: ignore[attr-defined]
    return verifier.commit(update)


def forked_view(device: DeviceIdentity, size: int) -> Checkpoint:
    """A view of the log the device showed this owner only, signed with the same key."""
    fork = AuditLog(
        sqlite3.connect(":memory:"),
        signer=device.private_key,
        origin=audit_origin(device.public_key),
        clock=lambda: NOW,
    )
    for i in range(size):
        fork.append("request.received", request_id=f"shown-only-to-this-owner-{i}")
    verifier = AuditVerifier(device.public_key, audit_origin(device.public_key))
    return verifier.verify_update(fork.checkpoint(), [])


def approve(world: World, owner: KeyBundle, requester: KeyBundle, device, checkpoint):  # type: ignore[no-untyped-def]
    return approve_first_segment(world, owner, device, token_id="rel-view", checkpoint=checkpoint)


def test_the_release_is_checked_against_the_owners_checkpoint(
    world: World, owner: KeyBundle, requester: KeyBundle, device: DeviceIdentity, tmp_path: Path
) -> None:
    desk: ConsentDesk = world.desk  # type: ignore[assignment]
    desk.submit_request(make_request(requester), NOW)
    seen = owner_view(world, device)
    request, approval = approve(world, owner, requester, device, seen)
    token = verify_owner_token(
        approval.token, typ=CONSENT_TYP, owners=world.owners(), device_id=device.device_id, now=NOW
    )
    claims = consent_claims(token)
    assert (claims.checkpoint_size, claims.checkpoint_root) == (seen.size, seen.root_hash)
    release = desk.record_approval(request.request_id, approval.token, approval.manifest, NOW)
    entry = world.audit.entries()[release.audit_index].body()  # type: ignore[attr-defined]
    assert entry["owner_checkpoint_size"] == seen.size
    desk.authorize_download(release.release_id, requester.key_id, NOW)
    buf = io.BytesIO()
    desk.write_bundle(release.release_id, buf)
    report = open_bundle(io.BytesIO(buf.getvalue()), [requester.age_identity], tmp_path / "ok")
    assert (
        f"the device's log extends the checkpoint of size {seen.size} the owner had verified "
        "when consenting (consistency proof), and the release entry was added after it"
    ) in report.checks

    # A device that cannot prove the log grew from the owner's view: the requester refuses.
    root = bundle_root(release.release_id)
    forged = rewrite(buf.getvalue(), f"{root}/audit/consistency.json", tamper_proof)
    with pytest.raises(BundleInvalid, match=r"^audit proof does not verify: consistency proof"):
        open_bundle(io.BytesIO(forged), [requester.age_identity], tmp_path / "forged")
    dropped = rewrite(buf.getvalue(), f"{root}/audit/consistency.json", None)
    with pytest.raises(BundleInvalid, match=r"^bundle has no audit/consistency.json$"):
        open_bundle(io.BytesIO(dropped), [requester.age_identity], tmp_path / "dropped")


def test_consent_given_on_another_view_is_refused_by_the_device(
    world: World, owner: KeyBundle, requester: KeyBundle, device: DeviceIdentity
) -> None:
    desk: ConsentDesk = world.desk  # type: ignore[assignment]
    desk.submit_request(make_request(requester), NOW)
    size = world.audit.size  # type: ignore[attr-defined]
    request, approval = approve(world, owner, requester, device, forked_view(device, size))
    with pytest.raises(CheckpointMismatch) as info:
        desk.record_approval(request.request_id, approval.token, approval.manifest, NOW)
    assert str(info.value) == (
        f"the consent token carries an audit checkpoint of size {size} that is not a tree head of "
        f"this device's log (size {size}); audit again, then approve"
    )
    last = world.audit.entries()[-1].body()  # type: ignore[attr-defined]
    assert (last["kind"], last["error"]) == ("consent.refused", "CheckpointMismatch")


def test_a_malformed_checkpoint_claim_is_refused(owner: KeyBundle, world: World) -> None:
    token = consent.tokens.sign_consent(
        owner.signing_key,
        device_id="dev",
        requester_key_id="req",
        request_id="r1",
        manifest=b"{}",
        token_id="t1",
        issued_at_s=NOW,
        expires_at_s=NOW + 60,
    )
    header = jws.decode_compact(token, typ=CONSENT_TYP).header
    payload = json.loads(b64url_decode(token.split(".")[1]))
    payload["checkpoint"] = {"size": 3, "root_hash": "00"}
    bad = jws.sign_compact(payload, typ=CONSENT_TYP, kid=header["kid"], sign=owner.signing_key.sign)
    with pytest.raises(TokenInvalid, match=r"checkpoint root_hash must be 64 lowercase hex"):
        verify_owner_token(bad, typ=CONSENT_TYP, owners=world.owners(), device_id="dev", now=NOW)


def tamper_proof(data: bytes) -> bytes:
    body = json.loads(data)
    body["proof"] = encode_proof([bytes(32)] * max(1, len(body["proof"])))
    return json.dumps(body).encode()


def rewrite(bundle: bytes, name: str, change) -> bytes:  # type: ignore[no-untyped-def]
    """The bundle with member ``name`` changed by ``change`` (None: dropped)."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(bundle), mode="r|") as src,
        tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as dst,
    ):
        for member in src:
            f = src.extractfile(member)
            data = f.read() if f is not None else b""
            if member.name == name:
                if change is None:
                    continue
                data = change(data)
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out.getvalue()
