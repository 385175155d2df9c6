"""The whole consent flow in one process: request, policy, approval of 3 of 6 segments, bundle,
verification and decryption by the requester (also with the `age` CLI), minimal disclosure."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import consent.owner
from consent.bundle import bundle_root
from consent.clips import StoreFootage
from consent.desk import ConsentDesk
from consent.models import RequestStatus
from consent.requester import open_bundle
from crypto import age
from crypto.keys import DeviceIdentity, KeyBundle
from tests.consent.kit import NOW, World, approve_first_segment, make_request, released_bundle

OWNER_PRIVATE_DETAILS = (
    b"Alex Morgan",
    b"42 Elm Street",
    b"alex.morgan@example.org",
    b"+1 217 555 0142",
)


def run_flow(world: World, owner: KeyBundle, requester: KeyBundle, device: DeviceIdentity):
    desk: ConsentDesk = world.desk  # type: ignore[assignment]
    record = desk.submit_request(make_request(requester), NOW)
    assert record.status is RequestStatus.PENDING
    footage = StoreFootage(world.clips)
    [pending] = consent.owner.list_pending(desk.pending_requests(NOW), footage, NOW)
    [(clip, segments)] = pending.clips
    assert clip.clip_id == "clip-0001"
    assert [s.index for s in segments] == [0, 1, 2, 3, 4, 5]
    chosen = [segments[1], segments[2], segments[4]]
    approval = consent.owner.approve(
        owner.signing_key,
        [owner.age_identity],
        pending.request,
        chosen,
        footage,
        device_id=device.device_id,
        device_key=device.public_key,
        sealed=world.clips.seals,
        token_id="rel-0001",
        now=NOW + 5,
        expires_at_s=NOW + 86400,
    )
    release = desk.record_approval(
        pending.request.request_id, approval.token, approval.manifest, NOW + 10
    )
    assert release.segment_ids == tuple(s.segment_id for s in chosen)
    assert desk.releases_for(pending.request.request_id) == [release.release_id]
    assert desk.stored_request(pending.request.request_id) == pending.request
    desk.authorize_download(release.release_id, requester.key_id, NOW + 20)
    buf = io.BytesIO()
    desk.write_bundle(release.release_id, buf)
    return pending.request, chosen, release, buf.getvalue()


def test_full_flow(
    world: World, owner: KeyBundle, requester: KeyBundle, device: DeviceIdentity, tmp_path: Path
) -> None:
    _, chosen, _, bundle = run_flow(world, owner, requester, device)

    report = open_bundle(
        io.BytesIO(bundle),
        [requester.age_identity],
        tmp_path / "out",
        requester_key_id=requester.key_id,
        device_key=device.public_key,
    )
    assert report.ok
    assert report.device_id == device.device_id
    assert report.device_key_pinned
    assert report.owner_key_id == owner.key_id
    assert [s.segment_id for s in report.segments] == [s.segment_id for s in chosen]
    expected = b"".join(world.plaintexts[s.segment_id] for s in chosen)
    assert Path(report.video or "").read_bytes() == expected
    # Each segment is also kept as the complete age file received, for `age -d`.
    for result, segment in zip(report.segments, chosen, strict=True):
        received = Path(result.age_file or "").read_bytes()
        assert (
            age.decrypt_bytes([requester.age_identity], received)
            == (world.plaintexts[segment.segment_id])
        )
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["ok"] is True
    assert saved["checks"] == list(report.checks)
    assert report.checks[0] == f"device.json signature by device key (device id {device.device_id})"
    assert report.checks[1] == (
        f"consent token signature by owner key {owner.key_id} (listed by the device)"
    )
    assert report.checks[2] == (
        f"consent token audience is device {device.device_id}, subject is {requester.key_id}"
    )
    assert report.checks[4] == "1 clip manifest(s) signed by the device key"
    assert report.checks[6] == (
        "release entry #2 is in the device's audit log (inclusion proof to the root of the "
        f"checkpoint of size 5 signed by doorward/{device.device_id})"
    )
    assert "VERIFIED" in (tmp_path / "out" / "report.txt").read_text()

    # The other three segments appear nowhere in the bundle: no ciphertext, no header, no text.
    released = {s.segment_id for s in chosen}
    for segment in world.segments:
        stored = segment.path.read_bytes()
        header, payload = age.split_header(stored)
        if segment.segment_id in released:
            assert payload[:4096] in bundle
            assert header not in bundle  # the owners' stanzas never leave the device
        else:
            assert payload[:64] not in bundle
            assert payload[-64:] not in bundle
            assert header[-60:] not in bundle
            assert f"SEGMENT-{segment.index}-PLAINTEXT".encode() not in bundle

    # The device held the clip from retention until the release ended (one download: ended).
    assert world.clips.holds == {}

    kinds = [e.body()["kind"] for e in world.audit.entries()]  # type: ignore[attr-defined]
    assert kinds == [
        "request.received",
        "request.pending",
        "release.created",
        "request.approved",
        "release.downloaded",
    ]


def test_hold_lasts_until_release_ends(
    world: World, owner: KeyBundle, requester: KeyBundle, device: DeviceIdentity
) -> None:
    desk: ConsentDesk = world.desk  # type: ignore[assignment]
    desk.submit_request(make_request(requester), NOW)
    footage = StoreFootage(world.clips)
    [pending] = consent.owner.list_pending(desk.pending_requests(NOW), footage, NOW)
    approval = consent.owner.approve(
        owner.signing_key,
        [owner.age_identity],
        pending.request,
        list(pending.clips[0][1][:2]),
        footage,
        device_id=device.device_id,
        device_key=device.public_key,
        sealed=world.clips.seals,
        token_id="rel-hold",
        now=NOW,
        expires_at_s=NOW + 3600,
        max_downloads=2,
    )
    desk.record_approval(pending.request.request_id, approval.token, approval.manifest, NOW)
    assert world.clips.holds == {"release:rel-hold:clip-0001": ("clip-0001", NOW + 3600)}
    desk.authorize_download("rel-hold", requester.key_id, NOW + 1)
    assert "release:rel-hold:clip-0001" in world.clips.holds
    assert desk.expire(NOW + 3600) == ["rel-hold"]
    assert world.clips.holds == {}
    assert desk.expire(NOW + 7200) == []
    kinds = [e.body()["kind"] for e in world.audit.entries()]  # type: ignore[attr-defined]
    assert kinds[-2:] == ["release.downloaded", "release.expired"]


def test_expired_request_leaves_the_pending_list(world: World, requester: KeyBundle) -> None:
    desk: ConsentDesk = world.desk  # type: ignore[assignment]
    token = make_request(requester, expires_at_s=NOW + 600)
    record = desk.submit_request(token, NOW)
    assert desk.request_token(record.request_id) == token
    assert desk.expire(NOW + 600) == []
    assert desk.request(record.request_id).status is RequestStatus.EXPIRED
    assert desk.pending_requests(NOW + 600) == []


def test_age_cli_decrypts_released_segments(
    world: World,
    owner: KeyBundle,
    requester: KeyBundle,
    device: DeviceIdentity,
    tmp_path: Path,
    age_cli: str,
) -> None:
    _, chosen, release, bundle = run_flow(world, owner, requester, device)
    key_file = tmp_path / "requester.key"
    key_file.write_text(requester.age_identity.to_secret_string() + "\n")
    key_file.chmod(0o600)
    root = bundle_root(release.release_id)
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        for segment in chosen:
            member = tar.extractfile(f"{root}/segments/{segment.segment_id}.age")
            assert member is not None
            encrypted = tmp_path / f"{segment.segment_id}.age"
            encrypted.write_bytes(member.read())
            out = subprocess.run(
                [age_cli, "--decrypt", "-i", str(key_file), str(encrypted)],
                capture_output=True,
                check=True,
                timeout=30,
            ).stdout
            assert out == world.plaintexts[segment.segment_id]
        readme = tar.extractfile(f"{root}/README.txt")
        assert readme is not None
        assert b"age --decrypt -i requester.key" in readme.read()


def test_default_bundle_discloses_nothing_about_the_owner(
    world: World, owner: KeyBundle, requester: KeyBundle, device: DeviceIdentity
) -> None:
    # The owner's details exist on the phone side of this test; none may reach the bundle.
    _, _, _, bundle = run_flow(world, owner, requester, device)
    lowered = bundle.lower()
    for detail in OWNER_PRIVATE_DETAILS:
        assert detail.lower() not in lowered
    for marker in (b'"name"', b'"address"', b'"email"', b'"phone"', b"@example.org"):
        assert marker not in lowered
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        names = sorted(m.name.split("/", 1)[1] for m in tar.getmembers())
    assert names == [
        "README.txt",
        "audit/checkpoint.txt",
        "audit/inclusion.json",
        "clips/clip-0001.json",
        "consent-token.jws",
        "device.json",
        "release-manifest.json",
        "segments/clip-0001.000001.age",
        "segments/clip-0001.000002.age",
        "segments/clip-0001.000004.age",
    ]


def test_chosen_disclosure_is_carried_and_reported(
    world: World, owner: KeyBundle, requester: KeyBundle, device: DeviceIdentity, tmp_path: Path
) -> None:
    desk: ConsentDesk = world.desk  # type: ignore[assignment]
    desk.submit_request(make_request(requester), NOW)
    request, approval = approve_first_segment(
        world, owner, device, token_id="rel-disclose", disclosures={"phone": "+1 217 555 0142"}
    )
    buf = released_bundle(desk, request, approval, requester)
    report = open_bundle(buf, [requester.age_identity], tmp_path / "o")
    assert report.disclosures == {"phone": "+1 217 555 0142"}
    assert not report.device_key_pinned
    assert report.to_text().startswith("Doorward release rel-disclose: UNPINNED\n")
    assert "Owner chose to disclose: phone" in report.to_text()


def test_list_pending_lists_only_footage_in_the_window(world: World, requester: KeyBundle) -> None:
    desk: ConsentDesk = world.desk  # type: ignore[assignment]
    # Segments last 2 s from NOW - 3 h + 600; a window ending at +605 overlaps segments 0 to 2.
    end = NOW - 3 * 3600 + 605
    desk.submit_request(make_request(requester, window_start_s=end - 3600, window_end_s=end), NOW)
    [pending] = consent.owner.list_pending(
        desk.pending_requests(NOW), StoreFootage(world.clips), NOW
    )
    assert [s.index for s in pending.clips[0][1]] == [0, 1, 2]
    other_camera = make_request(requester, camera="back")
    desk.submit_request(other_camera, NOW)
    listed = consent.owner.list_pending(desk.pending_requests(NOW), StoreFootage(world.clips), NOW)
    assert sorted(len(p.clips) for p in listed) == [0, 1]
