"""Requester side: a tampered bundle is refused with the check that failed; a header that does not
decrypt is reported, not hidden."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from consent._release_manifest import ReleasedSegment, ReleaseManifest
from consent.clips import StoreFootage
from consent.desk import ConsentDesk
from consent.errors import BundleInvalid
from consent.requester import open_bundle
from consent.tokens import sign_consent
from crypto import age
from crypto.keys import DeviceIdentity, KeyBundle
from crypto.signed import b64url, sign_document
from tests.consent.kit import NOW, World, make_request
from tests.consent.test_flow import run_flow

Members = dict[str, bytes]


def _members(bundle: bytes) -> Members:
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


def _pack(members: Members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _find(members: Members, suffix: str) -> str:
    return next(n for n in members if n.endswith(suffix))


@pytest.fixture
def bundle(world: World, owner: KeyBundle, requester: KeyBundle, device: DeviceIdentity) -> bytes:
    return run_flow(world, owner, requester, device)[3]


def _open(data: bytes, requester: KeyBundle, tmp_path: Path, device: DeviceIdentity | None = None):
    return open_bundle(
        io.BytesIO(data),
        [requester.age_identity],
        tmp_path / "out",
        requester_key_id=requester.key_id,
        device_key=device.public_key if device else None,
    )


def _swap_header(members: Members) -> None:
    first = _find(members, "clip-0001.000001.age")
    second = _find(members, "clip-0001.000002.age")
    head, _ = age.split_header(members[first])
    _, payload = age.split_header(members[second])
    members[second] = head + payload


def _flip_payload(members: Members) -> None:
    name = _find(members, "clip-0001.000004.age")
    data = bytearray(members[name])
    data[-10] ^= 1
    members[name] = bytes(data)


def _edit_clip_manifest(members: Members) -> None:
    name = _find(members, "clips/clip-0001.json")
    members[name] = members[name].replace(b'"camera":"front"', b'"camera":"back"')


def _edit_proof(members: Members) -> None:
    name = _find(members, "audit/inclusion.json")
    doc = json.loads(members[name])
    doc["index"] = 1
    members[name] = json.dumps(doc).encode()


def _drop_segment(members: Members) -> None:
    del members[_find(members, "clip-0001.000004.age")]


def _edit_manifest(members: Members) -> None:
    name = _find(members, "release-manifest.json")
    members[name] = members[name].replace(b'"index":4', b'"index":5')


def _stranger_device(members: Members) -> None:
    stranger = DeviceIdentity.generate()
    name = _find(members, "device.json")
    body = json.loads(members[name])["body"]
    members[name] = json.dumps(sign_document(body, stranger.private_key)).encode()


TAMPERING: list[tuple[str, Callable[[Members], None], str]] = [
    (
        "header swapped in",
        _swap_header,
        "header of segment 'clip-0001.000002' differs from the one the owner signed",
    ),
    (
        "payload flipped",
        _flip_payload,
        "payload of segment 'clip-0001.000004' does not match its hash",
    ),
    (
        "clip manifest edited",
        _edit_clip_manifest,
        "clip manifest of 'clip-0001' is not the one the owner signed",
    ),
    (
        "inclusion proof moved",
        _edit_proof,
        "audit proof does not verify: inclusion proof for leaf 1 of 5 does not lead to the root",
    ),
    (
        "segment dropped",
        _drop_segment,
        "bundle segments differ from the manifest (extra [], missing ['clip-0001.000004'])",
    ),
    (
        "release manifest edited",
        _edit_manifest,
        "release-manifest.json does not match the hash the owner signed",
    ),
    (
        "device.json signed by another device",
        _stranger_device,
        "device.json is signed by another key than the device you pinned",
    ),
]


@pytest.mark.parametrize(("what", "tamper", "message"), TAMPERING, ids=[t[0] for t in TAMPERING])
def test_tampered_bundle_refused(
    bundle: bytes,
    requester: KeyBundle,
    device: DeviceIdentity,
    tmp_path: Path,
    what: str,
    tamper: Callable[[Members], None],
    message: str,
) -> None:
    members = _members(bundle)
    tamper(members)
    with pytest.raises(BundleInvalid) as info:
        _open(_pack(members), requester, tmp_path, device)
    assert str(info.value) == message


def test_untampered_repack_still_verifies(
    bundle: bytes, requester: KeyBundle, device: DeviceIdentity, tmp_path: Path
) -> None:
    assert _open(_pack(_members(bundle)), requester, tmp_path, device).ok


def test_bundle_for_someone_else(bundle: bytes, tmp_path: Path, device: DeviceIdentity) -> None:
    other = KeyBundle.generate("x25519")
    with pytest.raises(BundleInvalid, match="not your key"):
        _open(bundle, other, tmp_path, device)


def test_member_outside_the_bundle_refused(
    bundle: bytes, requester: KeyBundle, tmp_path: Path
) -> None:
    members = _members(bundle)
    members["../evil.txt"] = b"x"
    with pytest.raises(BundleInvalid) as info:
        _open(_pack(members), requester, tmp_path)
    assert str(info.value) == "bundle member '../evil.txt' is outside the bundle"


def test_header_that_does_not_decrypt_is_reported(
    world: World,
    owner: KeyBundle,
    requester: KeyBundle,
    device: DeviceIdentity,
    tmp_path: Path,
) -> None:
    """A phone that signs a header re-wrapped from another segment: the device cannot tell (it
    holds no file key); the requester's decryption is the proof, and the report says so."""
    desk: ConsentDesk = world.desk  # type: ignore[assignment]
    desk.submit_request(make_request(requester), NOW)
    [request] = desk.pending_requests(NOW)
    footage = StoreFootage(world.clips)
    segs = world.segments
    recipient = [age.parse_recipient(request.recipient)]

    def rewrap(segment_id: str) -> bytes:
        with footage.read_segment(segment_id) as f:
            header = age.read_header(f)
        return age.reheader(header, [owner.age_identity], recipient)

    released = (
        ReleasedSegment(
            segs[0].segment_id, "clip-0001", 0, rewrap(segs[0].segment_id), segs[0].payload_sha256
        ),
        # Segment 1's payload with the file key of segment 3 (not released).
        ReleasedSegment(
            segs[1].segment_id, "clip-0001", 1, rewrap(segs[3].segment_id), segs[1].payload_sha256
        ),
    )
    clip_hash = hashlib.sha256(footage.manifest_bytes("clip-0001")).hexdigest()
    manifest = ReleaseManifest(
        request.request_id, device.device_id, requester.key_id, released, {"clip-0001": clip_hash}
    ).to_bytes()
    token = sign_consent(
        owner.signing_key,
        device_id=device.device_id,
        requester_key_id=requester.key_id,
        request_id=request.request_id,
        manifest=manifest,
        token_id="rel-bad",
        issued_at_s=NOW,
        expires_at_s=NOW + 3600,
    )
    desk.record_approval(request.request_id, token, manifest, NOW)
    desk.authorize_download("rel-bad", requester.key_id, NOW)
    buf = io.BytesIO()
    desk.write_bundle("rel-bad", buf)

    report = _open(buf.getvalue(), requester, tmp_path, device)
    assert not report.ok
    assert [(s.segment_id, s.decrypted) for s in report.segments] == [
        (segs[0].segment_id, True),
        (segs[1].segment_id, False),
    ]
    assert report.segments[1].error is not None
    assert report.segments[1].error.startswith("PayloadError: ")
    assert Path(report.video or "").read_bytes() == world.plaintexts[segs[0].segment_id]
    text = (tmp_path / "out" / "report.txt").read_text()
    assert text.startswith("Doorward release rel-bad: INCOMPLETE\n")
    assert f"  - {segs[1].segment_id} (clip clip-0001 #1): NOT decrypted: PayloadError" in text
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["ok"] is False
    assert saved["segments"][1]["decrypted"] is False


def test_another_genuine_audit_entry_is_not_this_release(
    world: World, bundle: bytes, requester: KeyBundle, device: DeviceIdentity, tmp_path: Path
) -> None:
    """A real entry of the same log, with a valid proof, still is not the release's entry."""
    from consent._merkle import encode_proof

    members = _members(bundle)
    name = _find(members, "audit/inclusion.json")
    doc = json.loads(members[name])
    entry = world.audit.entries(0, 1)[0]  # type: ignore[attr-defined]
    doc["leaf"] = b64url(entry.leaf)
    doc["index"] = 0
    doc["proof"] = encode_proof(world.audit.inclusion_proof(0, doc["tree_size"]))  # type: ignore[attr-defined]
    members[name] = json.dumps(doc).encode()
    with pytest.raises(BundleInvalid) as info:
        _open(_pack(members), requester, tmp_path, device)
    assert str(info.value) == "the audit entry in the bundle is not this release's"


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_flipped_byte_is_caught_or_harmless(
    world: World, bundle: bytes, requester: KeyBundle, device: DeviceIdentity, data: st.DataObject
) -> None:
    """Flip one byte anywhere in the tar: the bundle is refused, a segment is reported as not
    decrypted, or (README text, tar padding) the video that comes out is still the original."""
    position = data.draw(st.integers(0, len(bundle) - 1))
    bit = data.draw(st.integers(0, 7))
    mutated = bytearray(bundle)
    mutated[position] ^= 1 << bit
    expected = b"".join(
        world.plaintexts[s] for s in ("clip-0001.000001", "clip-0001.000002", "clip-0001.000004")
    )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            report = _open(bytes(mutated), requester, Path(tmp), device)
        except BundleInvalid as exc:
            event(f"refused: {str(exc).split(':')[0][:40]}")
            return
        event(f"ok={report.ok}")
        if report.ok:
            assert Path(report.video or "").read_bytes() == expected
        else:
            assert any(not s.decrypted and s.error for s in report.segments)
