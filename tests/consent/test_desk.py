"""Device side: every hostile token, request and fetch is refused with its own error, and audited."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

import consent.owner
from consent import jws
from consent._policy import DEFAULT_POLICY, Policy
from consent._release_manifest import parse_release_manifest
from consent.clips import StoreFootage
from consent.desk import ConsentDesk
from consent.errors import (
    DownloadsExhausted,
    DuplicateKey,
    HeaderInvalid,
    HeaderReused,
    ManifestMismatch,
    PolicyInvalid,
    PolicyRefused,
    ReleaseRevoked,
    RequestInvalid,
    RequestMismatch,
    RevocationTooLate,
    SegmentMissing,
    SignerRemoved,
    TokenExpired,
    TokenInvalid,
    TokenNotYetValid,
    TokenReplayed,
    TokenTooLarge,
    UnknownRelease,
    UnknownRequest,
    UnknownSigner,
    WrongAudience,
    WrongRequester,
)
from consent.models import ConsentRequest, RequestStatus
from consent.policy_doc import sign_policy
from consent.tokens import CONSENT_TYP
from crypto.keys import DeviceIdentity, KeyBundle
from crypto.signed import b64url, canonical_json
from tests.consent.conftest import NOW, World, make_request


@dataclass
class Scene:
    world: World
    desk: ConsentDesk
    request: ConsentRequest
    footage: StoreFootage
    owner: KeyBundle
    device: DeviceIdentity

    def approve(self, segments=None, *, key: KeyBundle | None = None, **overrides):
        key = key or self.owner
        args = {
            "device_id": self.device.device_id,
            "token_id": "rel-0001",
            "now": NOW,
            "expires_at_s": NOW + 86400,
        }
        args.update(overrides)
        chosen = segments if segments is not None else self.world.segments[:3]
        return consent.owner.approve(
            key.signing_key, [self.owner.age_identity], self.request, chosen, self.footage, **args
        )

    def last_audit(self) -> dict:
        return self.world.audit.entries()[-1].body()  # type: ignore[attr-defined]


@pytest.fixture
def scene(world: World, requester: KeyBundle, owner: KeyBundle, device: DeviceIdentity) -> Scene:
    desk: ConsentDesk = world.desk  # type: ignore[assignment]
    desk.submit_request(make_request(requester), NOW)
    [request] = desk.pending_requests(NOW)
    return Scene(world, desk, request, StoreFootage(world.clips), owner, device)


def _parts(token: str) -> tuple[dict, dict]:
    h, p, _ = token.split(".")
    dec = lambda t: json.loads(base64.urlsafe_b64decode(t + "=" * (-len(t) % 4)))  # noqa: E731
    return dec(h), dec(p)


def _resign(key: KeyBundle, claims: dict, kid: str | None = None) -> str:
    return jws.sign_compact(
        claims, typ=CONSENT_TYP, kid=kid or key.key_id, sign=key.signing_key.sign
    )


def _refused(scene: Scene, error: type[Exception], message: str, call) -> None:
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error
    assert str(info.value) == message
    entry = scene.last_audit()
    assert (entry["kind"], entry["error"]) == ("consent.refused", error.__name__)
    assert entry["reason"] == message[:500]


def test_alg_none(scene: Scene) -> None:
    approval = scene.approve()
    _, claims = _parts(approval.token)
    header = {"alg": "none", "kid": scene.owner.key_id, "typ": CONSENT_TYP}
    token = f"{b64url(canonical_json(header))}.{b64url(canonical_json(claims))}."
    _refused(
        scene,
        TokenInvalid,
        "token algorithm must be Ed25519, got 'none'",
        lambda: scene.desk.record_approval(scene.request.request_id, token, approval.manifest, NOW),
    )


def test_hs256_keyed_with_owner_public_key(scene: Scene) -> None:
    approval = scene.approve()
    _, claims = _parts(approval.token)
    header = {"alg": "HS256", "kid": scene.owner.key_id, "typ": CONSENT_TYP}
    signing_input = f"{b64url(canonical_json(header))}.{b64url(canonical_json(claims))}"
    public = scene.owner.signing_key.public_key().public_bytes_raw()
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64url(mac)}"
    _refused(
        scene,
        TokenInvalid,
        "token algorithm must be Ed25519, got 'HS256'",
        lambda: scene.desk.record_approval(scene.request.request_id, token, approval.manifest, NOW),
    )


def test_wrong_audience(scene: Scene) -> None:
    approval = scene.approve(device_id="someotherdevice")
    _refused(
        scene,
        WrongAudience,
        f"token is for device 'someotherdevice', this device is {scene.device.device_id!r}",
        lambda: scene.desk.record_approval(
            scene.request.request_id, approval.token, approval.manifest, NOW
        ),
    )


def test_expired(scene: Scene) -> None:
    approval = scene.approve(now=NOW - 7200, expires_at_s=NOW - 3600)
    _refused(
        scene,
        TokenExpired,
        f"token expired at {NOW - 3600}, now is {NOW}",
        lambda: scene.desk.record_approval(
            scene.request.request_id, approval.token, approval.manifest, NOW
        ),
    )


def test_not_yet_valid(scene: Scene) -> None:
    approval = scene.approve(now=NOW + 3600, expires_at_s=NOW + 7200)
    _refused(
        scene,
        TokenNotYetValid,
        f"token is valid from {NOW + 3600}, now is {NOW}",
        lambda: scene.desk.record_approval(
            scene.request.request_id, approval.token, approval.manifest, NOW
        ),
    )


def test_unpaired_key(scene: Scene, requester: KeyBundle) -> None:
    stranger = KeyBundle.generate("x25519")
    approval = scene.approve(key=stranger)
    _refused(
        scene,
        UnknownSigner,
        f"token is signed by key {stranger.key_id!r}, which is not a paired owner",
        lambda: scene.desk.record_approval(
            scene.request.request_id, approval.token, approval.manifest, NOW
        ),
    )


def test_paired_kid_with_unpaired_signature(scene: Scene) -> None:
    stranger = KeyBundle.generate("x25519")
    approval = scene.approve()
    _, claims = _parts(approval.token)
    token = _resign(stranger, claims, kid=scene.owner.key_id)
    _refused(
        scene,
        TokenInvalid,
        "token signature does not verify: it was altered or forged",
        lambda: scene.desk.record_approval(scene.request.request_id, token, approval.manifest, NOW),
    )


def test_removed_owner(scene: Scene) -> None:
    approval = scene.approve()
    scene.world.owners.remove(scene.owner.key_id)
    _refused(
        scene,
        SignerRemoved,
        f"token is signed by owner {scene.owner.key_id!r}, who has been removed",
        lambda: scene.desk.record_approval(
            scene.request.request_id, approval.token, approval.manifest, NOW
        ),
    )


def test_token_for_request_a_presented_for_b(scene: Scene, requester: KeyBundle) -> None:
    scene.desk.submit_request(make_request(requester), NOW)
    other = next(r for r in scene.desk.pending_requests(NOW) if r != scene.request)
    approval = scene.approve()
    _refused(
        scene,
        RequestMismatch,
        f"token is for request {scene.request.request_id!r}, presented for request "
        f"{other.request_id!r}",
        lambda: scene.desk.record_approval(
            other.request_id, approval.token, approval.manifest, NOW
        ),
    )


def test_manifest_hash_mismatch(scene: Scene) -> None:
    approval = scene.approve()
    manifest = json.loads(approval.manifest)
    manifest["segments"].pop()
    _refused(
        scene,
        ManifestMismatch,
        "release manifest does not match the hash the owner signed; it was altered after signing",
        lambda: scene.desk.record_approval(
            scene.request.request_id, approval.token, canonical_json(manifest), NOW
        ),
    )


def _signed_manifest(scene: Scene, edit) -> tuple[str, bytes]:
    """An approval whose manifest was edited *before* the owner signed it (a buggy phone)."""
    approval = scene.approve()
    manifest = json.loads(approval.manifest)
    edit(manifest)
    data = canonical_json(manifest)
    _, claims = _parts(approval.token)
    claims["manifest_sha256"] = hashlib.sha256(data).hexdigest()
    return _resign(scene.owner, claims), data


def test_header_from_another_segment_swapped_in(scene: Scene) -> None:
    def swap(manifest: dict) -> None:
        manifest["segments"][2]["header"] = manifest["segments"][0]["header"]

    token, data = _signed_manifest(scene, swap)
    segs = scene.world.segments
    _refused(
        scene,
        HeaderReused,
        f"segment {segs[2].segment_id!r} carries the same header as segment {segs[0].segment_id!r}",
        lambda: scene.desk.record_approval(scene.request.request_id, token, data, NOW),
    )


def test_header_for_the_wrong_recipient_type(scene: Scene) -> None:
    original = scene.world.segments[1].path.read_bytes()

    def owners_header(manifest: dict) -> None:
        # The stored header (two hybrid owner stanzas) instead of one X25519 stanza.
        from crypto import age

        manifest["segments"][1]["header"] = b64url(age.split_header(original)[0])

    token, data = _signed_manifest(scene, owners_header)
    _refused(
        scene,
        HeaderInvalid,
        f"new header of segment {scene.world.segments[1].segment_id!r} must hold exactly one "
        "X25519 stanza, got mlkem768x25519, mlkem768x25519",
        lambda: scene.desk.record_approval(scene.request.request_id, token, data, NOW),
    )


def test_payload_hash_not_the_stored_one(scene: Scene) -> None:
    def edit(manifest: dict) -> None:
        manifest["segments"][0]["payload_sha256"] = "0" * 64

    token, data = _signed_manifest(scene, edit)
    _refused(
        scene,
        ManifestMismatch,
        f"payload hash of segment {scene.world.segments[0].segment_id!r} differs from the store's",
        lambda: scene.desk.record_approval(scene.request.request_id, token, data, NOW),
    )


def test_segment_missing(scene: Scene) -> None:
    approval = scene.approve()
    gone = scene.world.segments[0]
    scene.world.clips.segments.pop(gone.segment_id)
    _refused(
        scene,
        SegmentMissing,
        f"segment {gone.segment_id!r} is not in the store",
        lambda: scene.desk.record_approval(
            scene.request.request_id, approval.token, approval.manifest, NOW
        ),
    )


def test_oversized_token(scene: Scene) -> None:
    approval = scene.approve()
    _refused(
        scene,
        TokenTooLarge,
        "token is 20000 bytes, more than the limit of 16384",
        lambda: scene.desk.record_approval(
            scene.request.request_id, "e" * 20000, approval.manifest, NOW
        ),
    )


def test_duplicate_json_keys(scene: Scene) -> None:
    approval = scene.approve()
    _, claims = _parts(approval.token)
    body = canonical_json(claims)[:-1] + b',"max_downloads":100}'
    header = {"alg": "Ed25519", "kid": scene.owner.key_id, "typ": CONSENT_TYP}
    signing_input = f"{b64url(canonical_json(header))}.{b64url(body)}"
    token = f"{signing_input}.{b64url(scene.owner.signing_key.sign(signing_input.encode()))}"
    _refused(
        scene,
        DuplicateKey,
        "JSON member 'max_downloads' appears twice",
        lambda: scene.desk.record_approval(scene.request.request_id, token, approval.manifest, NOW),
    )


def test_replayed_token(scene: Scene, requester: KeyBundle) -> None:
    approval = scene.approve()
    scene.desk.record_approval(scene.request.request_id, approval.token, approval.manifest, NOW)
    _refused(
        scene,
        TokenReplayed,
        "token 'rel-0001' was already used",
        lambda: scene.desk.record_approval(
            scene.request.request_id, approval.token, approval.manifest, NOW
        ),
    )


def test_request_no_longer_pending(scene: Scene) -> None:
    scene.desk.record_approval(scene.request.request_id, *_token_and_manifest(scene.approve()), NOW)
    again = scene.approve(token_id="rel-0002")
    _refused(
        scene,
        RequestMismatch,
        f"request {scene.request.request_id} is approved, not pending",
        lambda: scene.desk.record_approval(
            scene.request.request_id, again.token, again.manifest, NOW
        ),
    )


def _token_and_manifest(approval) -> tuple[str, bytes]:
    return approval.token, approval.manifest


class TestDownloads:
    @pytest.fixture
    def release(self, scene: Scene):
        approval = scene.approve(max_downloads=2)
        return scene.desk.record_approval(
            scene.request.request_id, approval.token, approval.manifest, NOW
        )

    def test_downloads_beyond_the_maximum(self, scene: Scene, release, requester) -> None:
        assert (
            scene.desk.authorize_download(release.release_id, requester.key_id, NOW).downloads == 1
        )
        assert (
            scene.desk.authorize_download(release.release_id, requester.key_id, NOW).downloads == 2
        )
        _refused(
            scene,
            DownloadsExhausted,
            "release rel-0001 was downloaded 2 of 2 allowed time(s)",
            lambda: scene.desk.authorize_download(release.release_id, requester.key_id, NOW),
        )

    def test_fetch_signed_by_another_key(self, scene: Scene, release, requester) -> None:
        _refused(
            scene,
            WrongRequester,
            f"release rel-0001 is for requester {requester.key_id!r}, the fetch was signed by "
            f"{scene.owner.key_id!r}",
            lambda: scene.desk.authorize_download(release.release_id, scene.owner.key_id, NOW),
        )

    def test_expired_release(self, scene: Scene, release, requester) -> None:
        _refused(
            scene,
            TokenExpired,
            f"release rel-0001 expired at {NOW + 86400}",
            lambda: scene.desk.authorize_download("rel-0001", requester.key_id, NOW + 86400),
        )

    def test_unknown_release(self, scene: Scene, release, requester) -> None:
        _refused(
            scene,
            UnknownRelease,
            "no release with id 'rel-9999'",
            lambda: scene.desk.authorize_download("rel-9999", requester.key_id, NOW),
        )

    def test_revoke_before_download(self, scene: Scene, release, requester, second_owner) -> None:
        revocation = consent.owner.revoke(
            second_owner.signing_key,
            "rel-0001",
            device_id=scene.device.device_id,
            token_id="rev-1",
            now=NOW,
        )
        assert scene.desk.revoke("rel-0001", revocation, NOW).revoked
        assert scene.world.clips.holds == {}
        assert scene.last_audit()["kind"] == "release.revoked"
        _refused(
            scene,
            ReleaseRevoked,
            "release rel-0001 was revoked by an owner",
            lambda: scene.desk.authorize_download("rel-0001", requester.key_id, NOW),
        )

    def test_revoke_after_download_is_too_late(self, scene: Scene, release, requester) -> None:
        scene.desk.authorize_download("rel-0001", requester.key_id, NOW)
        revocation = consent.owner.revoke(
            scene.owner.signing_key,
            "rel-0001",
            device_id=scene.device.device_id,
            token_id="rev-1",
            now=NOW,
        )
        _refused(
            scene,
            RevocationTooLate,
            "release rel-0001 was already downloaded 1 time(s); a release cannot be unsent",
            lambda: scene.desk.revoke("rel-0001", revocation, NOW),
        )


def test_owner_declines_with_a_reason(scene: Scene, requester: KeyBundle) -> None:
    token = consent.owner.decline(
        scene.owner.signing_key,
        scene.request,
        "Our camera does not face that porch.",
        device_id=scene.device.device_id,
        token_id="dec-1",
        now=NOW,
    )
    record = scene.desk.record_decline(scene.request.request_id, token, NOW)
    assert (record.status, record.rule, record.reason) == (
        RequestStatus.DECLINED,
        "owner",
        "Our camera does not face that porch.",
    )
    entry = scene.last_audit()
    assert (entry["kind"], entry["reason"], entry["owner"]) == (
        "request.declined",
        "Our camera does not face that porch.",
        scene.owner.key_id,
    )
    approval = scene.approve()
    with pytest.raises(RequestMismatch, match="is declined, not pending"):
        scene.desk.record_approval(scene.request.request_id, approval.token, approval.manifest, NOW)


class TestRequestsAtTheDevice:
    def test_hostile_request_refused_and_audited(self, world: World) -> None:
        desk: ConsentDesk = world.desk  # type: ignore[assignment]
        with pytest.raises(RequestInvalid) as info:
            desk.submit_request("x" * 9000, NOW)
        assert str(info.value) == (
            "request refused: token is 9000 bytes, more than the limit of 8192"
        )
        entry = world.audit.entries()[-1].body()  # type: ignore[attr-defined]
        assert (entry["kind"], entry["action"], entry["error"]) == (
            "consent.refused",
            "request",
            "RequestInvalid",
        )

    def test_policy_refusal_is_stored_and_audited(self, world: World, requester) -> None:
        desk: ConsentDesk = world.desk  # type: ignore[assignment]
        token = make_request(requester, case_reference="")
        with pytest.raises(PolicyRefused) as info:
            desk.submit_request(token, NOW)
        assert info.value.rule == "case_reference"
        [record] = desk.list_requests()
        assert (record.status, record.rule) == (RequestStatus.AUTO_DECLINED, "case_reference")
        kinds = [e.body()["kind"] for e in world.audit.entries()]  # type: ignore[attr-defined]
        assert kinds == ["request.received", "request.auto_declined"]
        assert desk.pending_requests(NOW) == []

    def test_same_request_twice_refused(self, world: World, requester) -> None:
        desk: ConsentDesk = world.desk  # type: ignore[assignment]
        token = make_request(requester)
        desk.submit_request(token, NOW)
        with pytest.raises(RequestInvalid, match="was already received"):
            desk.submit_request(token, NOW)

    def test_rate_rule_uses_stored_history(self, world: World, requester) -> None:
        desk: ConsentDesk = world.desk  # type: ignore[assignment]
        for _ in range(DEFAULT_POLICY.max_requests_per_day):
            desk.submit_request(make_request(requester), NOW)
        with pytest.raises(PolicyRefused) as info:
            desk.submit_request(make_request(requester), NOW)
        assert info.value.rule == "rate"
        # A day later the requester may ask again.
        later = make_request(
            requester, issued_at_s=NOW + 86400, window_end_s=NOW + 86000, window_start_s=NOW + 80000
        )
        assert desk.submit_request(later, NOW + 86400).status is RequestStatus.PENDING


class TestPolicyChanges:
    def test_owner_signed_policy_applies_and_is_audited(
        self, world: World, owner: KeyBundle, requester: KeyBundle, device: DeviceIdentity
    ) -> None:
        desk: ConsentDesk = world.desk  # type: ignore[assignment]
        lenient = Policy(require_case_reference=False)
        doc = sign_policy(lenient, owner.signing_key, device_id=device.device_id, issued_at_s=NOW)
        assert desk.set_policy(doc, NOW) == lenient
        entry = world.audit.entries()[-1].body()  # type: ignore[attr-defined]
        assert (entry["kind"], entry["owner"]) == ("policy.changed", owner.key_id)
        assert desk.submit_request(make_request(requester, case_reference=""), NOW).status is (
            RequestStatus.PENDING
        )
        with pytest.raises(PolicyInvalid, match="an old policy cannot be replayed"):
            desk.set_policy(doc, NOW)

    def test_policy_from_a_stranger_refused(
        self, world: World, requester: KeyBundle, device: DeviceIdentity
    ) -> None:
        desk: ConsentDesk = world.desk  # type: ignore[assignment]
        doc = sign_policy(
            Policy(), requester.signing_key, device_id=device.device_id, issued_at_s=NOW
        )
        with pytest.raises(PolicyInvalid):
            desk.set_policy(doc, NOW)
        entry = world.audit.entries()[-1].body()  # type: ignore[attr-defined]
        assert (entry["kind"], entry["action"]) == ("consent.refused", "policy")
        assert desk.policy() == DEFAULT_POLICY


def test_database_survives_reopen(scene: Scene, requester: KeyBundle, tmp_path: Path) -> None:
    approval = scene.approve()
    scene.desk.record_approval(scene.request.request_id, approval.token, approval.manifest, NOW)
    reopened = ConsentDesk(
        scene.world.db_path,
        device=scene.device,
        clips=scene.world.clips,
        audit=scene.world.audit,  # type: ignore[arg-type]
        owners=scene.world.owners,
    )
    release = reopened.release("rel-0001")
    assert release.segment_ids == tuple(s.segment_id for s in scene.world.segments[:3])
    assert (
        parse_release_manifest(approval.manifest).segments[0].segment_id == release.segment_ids[0]
    )
    buf = io.BytesIO()
    reopened.authorize_download("rel-0001", requester.key_id, NOW)
    reopened.write_bundle("rel-0001", buf)
    assert buf.getvalue()


def test_refusals_log_once_at_warning_then_quietly(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    desk: ConsentDesk = world.desk  # type: ignore[assignment]
    caplog.set_level(logging.DEBUG, logger="consent.desk")
    for _ in range(3):
        with pytest.raises(RequestInvalid):
            desk.submit_request("garbage", NOW)
    levels = [r.levelno for r in caplog.records if r.message.startswith("consent.refused")]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert all("garbage" not in r.message for r in caplog.records)
    # Every one is still on the record.
    kinds = [e.body()["kind"] for e in world.audit.entries()]  # type: ignore[attr-defined]
    assert kinds == ["consent.refused"] * 3


@pytest.mark.parametrize("lookup", ["request", "request_token", "stored_request", "decision_for"])
def test_unknown_request_is_named_so(world: World, lookup: str) -> None:
    with pytest.raises(UnknownRequest) as info:
        getattr(world.desk, lookup)("req-9999")
    assert type(info.value) is UnknownRequest
    assert str(info.value) == "no request with id 'req-9999'"
