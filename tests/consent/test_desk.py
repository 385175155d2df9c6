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
from tests.consent.kit import NOW, World, make_request


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
            "device_key": self.device.public_key,
            "sealed": self.world.clips.seals,
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


# Each hostile case below sets its scene up and returns the exact message the desk must refuse
# with, and the call that is refused; the error class stands next to it in the parameter table.
Refusal = tuple[str, object]


def _record(scene: Scene, token: str, manifest: bytes, request_id: str | None = None):
    return lambda: scene.desk.record_approval(
        request_id or scene.request.request_id, token, manifest, NOW
    )


def _alg_none(scene: Scene, requester: KeyBundle) -> Refusal:
    approval = scene.approve()
    _, claims = _parts(approval.token)
    header = {"alg": "none", "kid": scene.owner.key_id, "typ": CONSENT_TYP}
    token = f"{b64url(canonical_json(header))}.{b64url(canonical_json(claims))}."
    return (
        "token algorithm must be Ed25519, got 'none'",
        _record(scene, token, approval.manifest),
    )


def _hs256_keyed_with_owner_public_key(scene: Scene, requester: KeyBundle) -> Refusal:
    approval = scene.approve()
    _, claims = _parts(approval.token)
    header = {"alg": "HS256", "kid": scene.owner.key_id, "typ": CONSENT_TYP}
    signing_input = f"{b64url(canonical_json(header))}.{b64url(canonical_json(claims))}"
    public = scene.owner.signing_key.public_key().public_bytes_raw()
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64url(mac)}"
    return (
        "token algorithm must be Ed25519, got 'HS256'",
        _record(scene, token, approval.manifest),
    )


def _wrong_audience(scene: Scene, requester: KeyBundle) -> Refusal:
    approval = scene.approve()  # the phone checks the device's key, so re-sign for another
    claims = _parts(approval.token)[1] | {"aud": "someotherdevice"}
    return (
        f"token is for device 'someotherdevice', this device is {scene.device.device_id!r}",
        _record(scene, _resign(scene.owner, claims), approval.manifest),
    )


def _expired(scene: Scene, requester: KeyBundle) -> Refusal:
    approval = scene.approve(now=NOW - 7200, expires_at_s=NOW - 3600)
    return (
        f"token expired at {NOW - 3600}, now is {NOW}",
        _record(scene, approval.token, approval.manifest),
    )


def _not_yet_valid(scene: Scene, requester: KeyBundle) -> Refusal:
    approval = scene.approve(now=NOW + 3600, expires_at_s=NOW + 7200)
    return (
        f"token is valid from {NOW + 3600}, now is {NOW}",
        _record(scene, approval.token, approval.manifest),
    )


def _unpaired_key(scene: Scene, requester: KeyBundle) -> Refusal:
    stranger = KeyBundle.generate("x25519")
    approval = scene.approve(key=stranger)
    return (
        f"token is signed by key {stranger.key_id!r}, which is not a paired owner",
        _record(scene, approval.token, approval.manifest),
    )


def _paired_kid_with_unpaired_signature(scene: Scene, requester: KeyBundle) -> Refusal:
    stranger = KeyBundle.generate("x25519")
    approval = scene.approve()
    _, claims = _parts(approval.token)
    token = _resign(stranger, claims, kid=scene.owner.key_id)
    return (
        "token signature does not verify: it was altered or forged",
        _record(scene, token, approval.manifest),
    )


def _removed_owner(scene: Scene, requester: KeyBundle) -> Refusal:
    approval = scene.approve()
    scene.world.owners.remove(scene.owner.key_id)
    return (
        f"token is signed by owner {scene.owner.key_id!r}, who has been removed",
        _record(scene, approval.token, approval.manifest),
    )


def _token_for_request_a_presented_for_b(scene: Scene, requester: KeyBundle) -> Refusal:
    scene.desk.submit_request(make_request(requester), NOW)
    other = next(r for r in scene.desk.pending_requests(NOW) if r != scene.request)
    approval = scene.approve()
    return (
        f"token is for request {scene.request.request_id!r}, presented for request "
        f"{other.request_id!r}",
        _record(scene, approval.token, approval.manifest, other.request_id),
    )


def _manifest_hash_mismatch(scene: Scene, requester: KeyBundle) -> Refusal:
    approval = scene.approve()
    manifest = json.loads(approval.manifest)
    manifest["segments"].pop()
    return (
        "release manifest does not match the hash the owner signed; it was altered after signing",
        _record(scene, approval.token, canonical_json(manifest)),
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


def _header_from_another_segment_swapped_in(scene: Scene, requester: KeyBundle) -> Refusal:
    def swap(manifest: dict) -> None:
        manifest["segments"][2]["header"] = manifest["segments"][0]["header"]

    token, data = _signed_manifest(scene, swap)
    segs = scene.world.segments
    return (
        f"segment {segs[2].segment_id!r} carries the same header as segment {segs[0].segment_id!r}",
        _record(scene, token, data),
    )


def _header_for_the_wrong_recipient_type(scene: Scene, requester: KeyBundle) -> Refusal:
    original = scene.world.segments[1].path.read_bytes()

    def owners_header(manifest: dict) -> None:
        # The stored header (two hybrid owner stanzas) instead of one X25519 stanza.
        from crypto import age

        manifest["segments"][1]["header"] = b64url(age.split_header(original)[0])

    token, data = _signed_manifest(scene, owners_header)
    return (
        f"new header of segment {scene.world.segments[1].segment_id!r} must hold exactly one "
        "X25519 stanza, got mlkem768x25519, mlkem768x25519",
        _record(scene, token, data),
    )


def _payload_hash_not_the_stored_one(scene: Scene, requester: KeyBundle) -> Refusal:
    def edit(manifest: dict) -> None:
        manifest["segments"][0]["payload_sha256"] = "0" * 64

    token, data = _signed_manifest(scene, edit)
    return (
        f"payload hash of segment {scene.world.segments[0].segment_id!r} differs from the store's",
        _record(scene, token, data),
    )


def _segment_missing(scene: Scene, requester: KeyBundle) -> Refusal:
    approval = scene.approve()
    gone = scene.world.segments[0]
    scene.world.clips.segments.pop(gone.segment_id)
    return (
        f"segment {gone.segment_id!r} is not in the store",
        _record(scene, approval.token, approval.manifest),
    )


def _oversized_token(scene: Scene, requester: KeyBundle) -> Refusal:
    approval = scene.approve()
    return (
        "token is 20000 bytes, more than the limit of 16384",
        _record(scene, "e" * 20000, approval.manifest),
    )


def _duplicate_json_keys(scene: Scene, requester: KeyBundle) -> Refusal:
    approval = scene.approve()
    _, claims = _parts(approval.token)
    body = canonical_json(claims)[:-1] + b',"max_downloads":100}'
    header = {"alg": "Ed25519", "kid": scene.owner.key_id, "typ": CONSENT_TYP}
    signing_input = f"{b64url(canonical_json(header))}.{b64url(body)}"
    token = f"{signing_input}.{b64url(scene.owner.signing_key.sign(signing_input.encode()))}"
    return (
        "JSON member 'max_downloads' appears twice",
        _record(scene, token, approval.manifest),
    )


def _replayed_token(scene: Scene, requester: KeyBundle) -> Refusal:
    approval = scene.approve()
    scene.desk.record_approval(scene.request.request_id, approval.token, approval.manifest, NOW)
    return (
        "token 'rel-0001' was already used",
        _record(scene, approval.token, approval.manifest),
    )


def _request_no_longer_pending(scene: Scene, requester: KeyBundle) -> Refusal:
    scene.desk.record_approval(scene.request.request_id, *_token_and_manifest(scene.approve()), NOW)
    again = scene.approve(token_id="rel-0002")
    return (
        f"request {scene.request.request_id} is approved, not pending",
        _record(scene, again.token, again.manifest),
    )


def _token_and_manifest(approval) -> tuple[str, bytes]:
    return approval.token, approval.manifest


@pytest.mark.parametrize(
    ("error", "case"),
    [
        pytest.param(TokenInvalid, _alg_none, id="alg_none"),
        pytest.param(TokenInvalid, _hs256_keyed_with_owner_public_key, id="hs256_owner_public_key"),
        pytest.param(WrongAudience, _wrong_audience, id="wrong_audience"),
        pytest.param(TokenExpired, _expired, id="expired"),
        pytest.param(TokenNotYetValid, _not_yet_valid, id="not_yet_valid"),
        pytest.param(UnknownSigner, _unpaired_key, id="unpaired_key"),
        pytest.param(
            TokenInvalid, _paired_kid_with_unpaired_signature, id="paired_kid_unpaired_signature"
        ),
        pytest.param(SignerRemoved, _removed_owner, id="removed_owner"),
        pytest.param(
            RequestMismatch, _token_for_request_a_presented_for_b, id="token_for_a_presented_for_b"
        ),
        pytest.param(ManifestMismatch, _manifest_hash_mismatch, id="manifest_hash_mismatch"),
        pytest.param(
            HeaderReused, _header_from_another_segment_swapped_in, id="header_of_another_segment"
        ),
        pytest.param(
            HeaderInvalid, _header_for_the_wrong_recipient_type, id="header_wrong_recipient_type"
        ),
        pytest.param(ManifestMismatch, _payload_hash_not_the_stored_one, id="payload_hash_differs"),
        pytest.param(SegmentMissing, _segment_missing, id="segment_missing"),
        pytest.param(TokenTooLarge, _oversized_token, id="oversized_token"),
        pytest.param(DuplicateKey, _duplicate_json_keys, id="duplicate_json_keys"),
        pytest.param(TokenReplayed, _replayed_token, id="replayed_token"),
        pytest.param(RequestMismatch, _request_no_longer_pending, id="request_no_longer_pending"),
    ],
)
def test_hostile_approval_refused(
    scene: Scene, requester: KeyBundle, error: type[Exception], case
) -> None:
    message, call = case(scene, requester)
    _refused(scene, error, message, call)


def _downloads_beyond_the_maximum(scene: Scene, release, requester, second_owner) -> Refusal:
    assert scene.desk.authorize_download(release.release_id, requester.key_id, NOW).downloads == 1
    assert scene.desk.authorize_download(release.release_id, requester.key_id, NOW).downloads == 2
    return (
        "release rel-0001 was downloaded 2 of 2 allowed time(s)",
        lambda: scene.desk.authorize_download(release.release_id, requester.key_id, NOW),
    )


def _fetch_signed_by_another_key(scene: Scene, release, requester, second_owner) -> Refusal:
    return (
        f"release rel-0001 is for requester {requester.key_id!r}, the fetch was signed by "
        f"{scene.owner.key_id!r}",
        lambda: scene.desk.authorize_download(release.release_id, scene.owner.key_id, NOW),
    )


def _expired_release(scene: Scene, release, requester, second_owner) -> Refusal:
    return (
        f"release rel-0001 expired at {NOW + 86400}",
        lambda: scene.desk.authorize_download("rel-0001", requester.key_id, NOW + 86400),
    )


def _unknown_release(scene: Scene, release, requester, second_owner) -> Refusal:
    return (
        "no release with id 'rel-9999'",
        lambda: scene.desk.authorize_download("rel-9999", requester.key_id, NOW),
    )


def _revoke_before_download(scene: Scene, release, requester, second_owner) -> Refusal:
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
    return (
        "release rel-0001 was revoked by an owner",
        lambda: scene.desk.authorize_download("rel-0001", requester.key_id, NOW),
    )


def _revoke_after_download_is_too_late(scene: Scene, release, requester, second_owner) -> Refusal:
    scene.desk.authorize_download("rel-0001", requester.key_id, NOW)
    revocation = consent.owner.revoke(
        scene.owner.signing_key,
        "rel-0001",
        device_id=scene.device.device_id,
        token_id="rev-1",
        now=NOW,
    )
    return (
        "release rel-0001 was already downloaded 1 time(s); a release cannot be unsent",
        lambda: scene.desk.revoke("rel-0001", revocation, NOW),
    )


class TestDownloads:
    @pytest.fixture
    def release(self, scene: Scene):
        approval = scene.approve(max_downloads=2)
        return scene.desk.record_approval(
            scene.request.request_id, approval.token, approval.manifest, NOW
        )

    @pytest.mark.parametrize(
        ("error", "case"),
        [
            pytest.param(DownloadsExhausted, _downloads_beyond_the_maximum, id="beyond_maximum"),
            pytest.param(WrongRequester, _fetch_signed_by_another_key, id="signed_by_another_key"),
            pytest.param(TokenExpired, _expired_release, id="expired_release"),
            pytest.param(UnknownRelease, _unknown_release, id="unknown_release"),
            pytest.param(ReleaseRevoked, _revoke_before_download, id="revoked_before_download"),
            pytest.param(
                RevocationTooLate, _revoke_after_download_is_too_late, id="revoke_after_download"
            ),
        ],
    )
    def test_refused(
        self, scene: Scene, release, requester, second_owner, error: type[Exception], case
    ) -> None:
        message, call = case(scene, release, requester, second_owner)
        _refused(scene, error, message, call)


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

    def test_same_request_twice_is_recorded_once(self, world: World, requester) -> None:
        desk: ConsentDesk = world.desk  # type: ignore[assignment]
        token = make_request(requester)
        first = desk.submit_request(token, NOW)
        entries = world.audit.size  # type: ignore[attr-defined]
        again = desk.submit_request(token, NOW + 5)
        assert (again.request_id, again.status, again.received_s) == (
            first.request_id,
            RequestStatus.PENDING,
            first.received_s,
        )
        assert again.repeated
        assert not first.repeated
        assert world.audit.size == entries  # type: ignore[attr-defined]
        assert len(desk.list_requests()) == 1

    def test_same_declined_request_twice_is_declined_again_unaudited(
        self, world: World, requester
    ) -> None:
        desk: ConsentDesk = world.desk  # type: ignore[assignment]
        token = make_request(requester, case_reference="")
        with pytest.raises(PolicyRefused):
            desk.submit_request(token, NOW)
        entries = world.audit.size  # type: ignore[attr-defined]
        with pytest.raises(PolicyRefused) as info:
            desk.submit_request(token, NOW + 5)
        assert info.value.rule == "case_reference"
        assert world.audit.size == entries  # type: ignore[attr-defined]

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
