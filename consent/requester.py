"""The requester's side: check a release bundle against every signature, hash and proof, decrypt it,
join the segments into one MPEG-TS file and write a verification report (JSON and text).

Trust: the device key comes from the bundle's self-signed ``device.json`` unless the caller pins it
(``device_key``, e.g. the key learned when the request was sent over the pinned TLS connection); the
report says which. Every other check chains from that key: the owner key the device lists, the
clip manifests and the audit checkpoint are all signed by it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consent import jws
from consent._audit_errors import AuditError
from consent._bundle_tar import read_members
from consent._merkle import decode_proof, leaf_hash, verify_consistency, verify_inclusion
from consent._note import Checkpoint, NoteVerifier, open_checkpoint
from consent._release_manifest import ReleaseManifest, parse_release_manifest
from consent.bundle import BundleLimits, bundle_root
from consent.clip_manifest import ClipManifest, ClipManifestSegment
from consent.errors import BundleInvalid, ConsentError, ManifestMismatch
from consent.tokens import CONSENT_TYP, checkpoint_claim
from crypto import age
from crypto.errors import CryptoError, SignatureError
from crypto.keys import device_id as device_id_of
from crypto.keys import key_id, load_ed25519_public
from crypto.signed import b64url, b64url_decode, verify_document
from crypto.tls import spki_fingerprint

__all__ = [
    "BundleLimits",
    "SegmentResult",
    "VerificationReport",
    "bundle_device_id",
    "open_bundle",
]

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_DEFAULT_LIMITS = BundleLimits()


@dataclass(frozen=True, slots=True)
class SegmentResult:
    """What happened to one released segment."""

    segment_id: str
    clip_id: str
    index: int
    payload_sha256: str
    decrypted: bool
    error: str | None = None
    age_file: str | None = None  # the complete age file as received (opens with `age -d`)


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """What was checked, against which keys, and what was decrypted."""

    release_id: str
    device_id: str
    device_key: str
    device_key_pinned: bool
    owner_key_id: str
    requester_key_id: str
    checks: tuple[str, ...]
    segments: tuple[SegmentResult, ...]
    video: str | None
    disclosures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every segment decrypted (also when there are none)."""
        return all(s.decrypted for s in self.segments)

    @property
    def verdict(self) -> str:
        """VERIFIED (every segment decrypted, against a pinned device key), UNPINNED (the same,
        but the device key came from the bundle itself, so nothing shows which device made it)
        or INCOMPLETE (a segment did not decrypt)."""
        if not self.ok:
            return "INCOMPLETE"
        return "VERIFIED" if self.device_key_pinned else "UNPINNED"

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict: these fields, ``ok``, and each segment as an object."""
        return {
            "ok": self.ok,
            "verdict": self.verdict,
            "release_id": self.release_id,
            "device_id": self.device_id,
            "device_key": self.device_key,
            "device_key_pinned": self.device_key_pinned,
            "owner_key_id": self.owner_key_id,
            "requester_key_id": self.requester_key_id,
            "checks": list(self.checks),
            "segments": [
                {
                    "segment_id": s.segment_id,
                    "clip_id": s.clip_id,
                    "index": s.index,
                    "payload_sha256": s.payload_sha256,
                    "decrypted": s.decrypted,
                    "error": s.error,
                    "age_file": s.age_file,
                }
                for s in self.segments
            ],
            "video": self.video,
            "disclosures": dict(self.disclosures),
        }

    def to_text(self) -> str:
        """The report for a person: verdict, keys, checks, each segment's outcome, the video."""
        pin = "pinned by you" if self.device_key_pinned else "taken from the bundle (not pinned)"
        lines = [
            f"Doorward release {self.release_id}: {self.verdict}",
            f"Device {self.device_id}, key {self.device_key} ({pin})",
            f"Consent signed by owner key {self.owner_key_id}",
            f"Released to requester key {self.requester_key_id}",
            "",
            "Checked:",
            *(f"  - {c}" for c in self.checks),
            "",
            "Segments:",
        ]
        for s in self.segments:
            state = "decrypted" if s.decrypted else f"NOT decrypted: {s.error}"
            lines.append(f"  - {s.segment_id} (clip {s.clip_id} #{s.index}): {state}")
        lines += ["", f"Video: {self.video or 'none written'}"]
        if self.disclosures:
            lines.append("Owner chose to disclose: " + ", ".join(sorted(self.disclosures)))
        return "\n".join(lines) + "\n"


def open_bundle(
    src: BinaryIO | Path,
    identities: Sequence[age.Identity],
    out_dir: Path,
    *,
    requester_key_id: str | None = None,
    device_key: Ed25519PublicKey | None = None,
    device_fingerprint: str | None = None,
    limits: BundleLimits = _DEFAULT_LIMITS,
) -> VerificationReport:
    """Verify, decrypt and join a release bundle into ``out_dir``; raise BundleInvalid if any
    signature, hash or proof fails, or the bundle passes ``limits``. A segment that does not
    decrypt is reported, not raised.

    Pin the device with ``device_key`` (its Ed25519 key) or ``device_fingerprint`` (the SHA-256
    SPKI fingerprint of its TLS key, which is the same key): a bundle signed by any other key is
    refused. Without either, the bundle's own key is used and the report says UNPINNED."""
    out_dir = Path(out_dir)
    work = out_dir / "encrypted"
    work.mkdir(parents=True, exist_ok=True)
    pin = _Pin(device_key, device_fingerprint)
    if isinstance(src, Path):
        with open(src, "rb") as f:
            bundle = _read_bundle(f, work, pin, requester_key_id, limits)
    else:
        bundle = _read_bundle(src, work, pin, requester_key_id, limits)
    front, checks = bundle.front, bundle.checks
    _check_segments(front, bundle.received, checks)
    _check_audit(bundle.small, front, checks)
    results, video = _decrypt_all(front.manifest, bundle.received, identities, out_dir)
    report = VerificationReport(
        release_id=front.release_id,
        device_id=front.device_id,
        device_key=b64url(front.device_key.public_bytes_raw()),
        device_key_pinned=pin.pinned,
        owner_key_id=front.owner_key_id,
        requester_key_id=front.claims["sub"],
        checks=tuple(checks),
        segments=tuple(results),
        video=str(video) if video is not None else None,
        disclosures=dict(front.claims["disclosures"]),
    )
    (out_dir / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    (out_dir / "report.txt").write_text(report.to_text())
    logger.info("consent.bundle_opened release_id=%s ok=%s", front.release_id, report.ok)
    return report


def bundle_device_id(src: BinaryIO | Path, limits: BundleLimits = _DEFAULT_LIMITS) -> str:
    """The device id that a bundle's ``device.json`` claims, NOT verified: only for choosing which
    pinned key to verify the bundle with. Raises BundleInvalid if it cannot be read."""
    if isinstance(src, Path):
        with open(src, "rb") as f:
            return bundle_device_id(f, limits)
    root: list[str] = []
    for member in read_members(src, limits):
        if _relative(member.name, root) != "device.json":
            continue
        if member.size > limits.max_small_member_bytes:
            raise BundleInvalid(f"'device.json' is larger than {limits.max_small_member_bytes}")
        try:
            device = json.loads(member.stream.read(member.size))["body"]["device_id"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BundleInvalid(f"device.json does not name a device: {exc}") from exc
        if not isinstance(device, str) or not device.isalnum() or len(device) > 64:
            raise BundleInvalid("device.json does not name a device")
        return device
    raise BundleInvalid("bundle has no device.json")


@dataclass(frozen=True, slots=True)
class _Pin:
    key: Ed25519PublicKey | None
    fingerprint: str | None

    @property
    def pinned(self) -> bool:
        return self.key is not None or self.fingerprint is not None

    def check(self, key: Ed25519PublicKey) -> None:
        if self.key is not None and key.public_bytes_raw() != self.key.public_bytes_raw():
            raise BundleInvalid("device.json is signed by another key than the device you pinned")
        if self.fingerprint is not None and not hmac.compare_digest(
            spki_fingerprint(key), self.fingerprint
        ):
            raise BundleInvalid(
                "device.json is signed by another key than the device you pinned "
                "(not the key of its pinned TLS fingerprint)"
            )


@dataclass(slots=True)
class _Received:
    header: bytes
    payload_sha256: str
    path: Path


@dataclass(frozen=True, slots=True)
class _Front:
    """What the files in front of the segments establish, all checked."""

    device_key: Ed25519PublicKey
    device_id: str
    release_id: str
    owner_key_id: str
    claims: dict[str, Any]
    manifest: ReleaseManifest
    signed_segments: dict[tuple[str, int], ClipManifestSegment]

    def segment_limit(self, segment_id: str) -> int:
        """The most bytes the age file of ``segment_id`` may have: its new header plus the whole
        stored file the device signed (whose payload is that less the owners' header)."""
        for seg in self.manifest.segments:
            if seg.segment_id == segment_id:
                signed = self.signed_segments.get((seg.clip_id, seg.index))
                if signed is None:
                    raise BundleInvalid(
                        f"payload hash of segment {segment_id!r} is not the one the device signed"
                    )
                return len(seg.header) + signed.size
        raise BundleInvalid(
            f"bundle holds segment {segment_id!r}, which the release manifest does not list"
        )


@dataclass(frozen=True, slots=True)
class _Bundle:
    front: _Front
    small: dict[str, bytes]
    received: dict[str, _Received]
    checks: list[str]


# The files a bundle must carry before its first segment: a segment is stored only once they
# have been verified, so its size can be held to the signed one.
_FRONT_FILES = ("device.json", "consent-token.jws", "release-manifest.json")


def _read_bundle(
    src: BinaryIO, work: Path, pin: _Pin, requester_key_id: str | None, limits: BundleLimits
) -> _Bundle:
    """Stream the tar: small files are held (capped one by one and in total), and each segment
    goes to ``work``, once the files in front of it are verified, if no larger than signed."""
    small: dict[str, bytes] = {}
    small_total = 0
    received: dict[str, _Received] = {}
    checks: list[str] = []
    front: _Front | None = None
    root: list[str] = []
    for member in read_members(src, limits):
        name = _relative(member.name, root)
        if name.startswith("segments/") and name.endswith(".age"):
            segment_id = name[len("segments/") : -len(".age")]
            if front is None:
                front = _check_front(small, pin, requester_key_id, checks)
            if segment_id in received:
                raise BundleInvalid(f"segment {segment_id!r} appears twice in the bundle")
            limit = front.segment_limit(segment_id)
            if member.size > limit:
                raise BundleInvalid(
                    f"segment {segment_id!r} is {member.size} bytes; its device-signed clip "
                    f"manifest allows at most {limit}"
                )
            received[segment_id] = _receive_segment(
                member.stream, work / f"{len(received):06d}.age"
            )
            continue
        if name in small:
            raise BundleInvalid(f"{name!r} appears twice in the bundle")
        if member.size > limits.max_small_member_bytes:
            raise BundleInvalid(f"{name!r} is larger than {limits.max_small_member_bytes}")
        small_total += member.size
        if small_total > limits.max_small_total_bytes:
            raise BundleInvalid(
                "bundle's small files (token, manifests, proofs) add up to more than "
                f"{limits.max_small_total_bytes} bytes"
            )
        small[name] = member.stream.read(member.size)
    if front is None:
        front = _check_front(small, pin, requester_key_id, checks)
    return _Bundle(front, small, received, checks)


def _relative(member_name: str, root: list[str]) -> str:
    """The member's name inside the bundle's top directory (``root`` keeps it once seen)."""
    top, _, name = member_name.partition("/")
    if not root:
        root.append(top)
    if top != root[0] or not top.startswith(bundle_root("")) or not name:
        raise BundleInvalid(f"bundle member {member_name[:80]!r} is outside the bundle")
    return name


def _check_front(
    small: dict[str, bytes], pin: _Pin, requester_key_id: str | None, checks: list[str]
) -> _Front:
    for name in _FRONT_FILES:
        if name not in small:
            raise BundleInvalid(f"bundle has no {name} in front of its segments")
    dev_key, dev_id, listed_owners, release_id = _check_device(small["device.json"], pin, checks)
    token = small["consent-token.jws"].decode("ascii", "replace")
    manifest_bytes = small["release-manifest.json"]
    claims, owner_kid = _check_token(token, listed_owners, dev_id, release_id, manifest_bytes)
    checks.append(f"consent token signature by owner key {owner_kid} (listed by the device)")
    if requester_key_id is not None and claims["sub"] != requester_key_id:
        raise BundleInvalid(
            f"release is for requester {claims['sub']!r}, not your key {requester_key_id!r}"
        )
    checks.append(f"consent token audience is device {dev_id}, subject is {claims['sub']}")
    checks.append("SHA-256 of release-manifest.json matches the token")
    try:
        manifest = parse_release_manifest(manifest_bytes)
    except ManifestMismatch as exc:
        raise BundleInvalid(str(exc)) from exc
    if manifest.device_id != dev_id or manifest.requester_key_id != claims["sub"]:
        raise BundleInvalid("release manifest names another device or requester")
    if manifest.request_id != claims["request_id"]:
        raise BundleInvalid("release manifest names another request than the token")
    signed = _check_clip_manifests(small, manifest, dev_key, checks)
    return _Front(dev_key, dev_id, release_id, owner_kid, claims, manifest, signed)


def _receive_segment(f: BinaryIO, path: Path) -> _Received:
    try:
        header = age.read_header(f)
    except CryptoError as exc:
        raise BundleInvalid(f"a segment in the bundle has no valid age header: {exc}") from exc
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        out.write(header)
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return _Received(header, digest.hexdigest(), path)


def _need(small: dict[str, bytes], name: str) -> bytes:
    if name not in small:
        raise BundleInvalid(f"bundle has no {name}")
    return small[name]


def _check_device(
    data: bytes, pin: _Pin, checks: list[str]
) -> tuple[Ed25519PublicKey, str, dict[str, Ed25519PublicKey], str]:
    try:
        doc = jws.loads_strict(data, "device.json")
        key = load_ed25519_public(doc["key"])
        pin.check(key)
        body = verify_document(doc, key)
        dev_id = body["device_id"]
        if body.get("type") != "doorward-release-keys" or dev_id != device_id_of(key):
            raise BundleInvalid("device.json does not describe the key that signed it")
        owners = {o["key_id"]: load_ed25519_public(o["ed25519"]) for o in body["owners"]}
        release_id = body["release_id"]
    except BundleInvalid:
        raise
    except (ConsentError, CryptoError, ValueError, KeyError, TypeError) as exc:
        raise BundleInvalid(f"device.json does not verify: {exc}") from exc
    for kid, public in owners.items():
        if key_id(public) != kid:
            raise BundleInvalid(f"device.json lists owner {kid!r} with a key of another id")
    checks.append(f"device.json signature by device key (device id {dev_id})")
    return key, dev_id, owners, release_id


def _check_token(
    token: str,
    owners: dict[str, Ed25519PublicKey],
    dev_id: str,
    release_id: str,
    manifest: bytes,
) -> tuple[dict[str, Any], str]:
    try:
        compact = jws.decode_compact(token, typ=CONSENT_TYP)
        kid = compact.header["kid"]
        if kid not in owners:
            raise BundleInvalid(
                f"consent token is signed by {kid!r}, not an owner the device lists"
            )
        jws.verify_signature(compact, owners[kid])
    except ConsentError as exc:
        if isinstance(exc, BundleInvalid):
            raise
        raise BundleInvalid(f"consent token does not verify: {exc}") from exc
    claims = compact.claims
    if claims.get("aud") != dev_id or claims.get("iss") != kid:
        raise BundleInvalid("consent token is not for this device or not issued by its signer")
    if claims.get("jti") != release_id:
        raise BundleInvalid("consent token is for another release")
    if claims.get("manifest_sha256") != hashlib.sha256(manifest).hexdigest():
        raise BundleInvalid("release-manifest.json does not match the hash the owner signed")
    if not isinstance(claims.get("disclosures"), dict):
        raise BundleInvalid("consent token has no disclosures object")
    for name in ("sub", "request_id"):
        if not isinstance(claims.get(name), str):
            raise BundleInvalid(f"consent token has no {name}")
    return claims, kid


def _check_clip_manifests(
    small: dict[str, bytes],
    manifest: ReleaseManifest,
    dev_key: Ed25519PublicKey,
    checks: list[str],
) -> dict[tuple[str, int], ClipManifestSegment]:
    signed: dict[tuple[str, int], ClipManifestSegment] = {}
    for clip_id, digest in manifest.clip_manifests.items():
        data = _need(small, f"clips/{clip_id}.json")
        if hashlib.sha256(data).hexdigest() != digest:
            raise BundleInvalid(f"clip manifest of {clip_id!r} is not the one the owner signed")
        try:
            clip = ClipManifest.verify(data, dev_key)
        except (ConsentError, SignatureError) as exc:
            raise BundleInvalid(f"clip manifest of {clip_id!r} does not verify: {exc}") from exc
        if clip.clip_id != clip_id:
            raise BundleInvalid(f"clip manifest of {clip_id!r} describes another clip")
        for entry in clip.segments:
            signed[(clip_id, entry.index)] = entry
    checks.append(f"{len(manifest.clip_manifests)} clip manifest(s) signed by the device key")
    return signed


def _check_segments(front: _Front, received: dict[str, _Received], checks: list[str]) -> None:
    manifest = front.manifest
    expected = {s.segment_id for s in manifest.segments}
    if set(received) != expected:
        extra = sorted(set(received) - expected)[:3]
        missing = sorted(expected - set(received))[:3]
        raise BundleInvalid(
            f"bundle segments differ from the manifest (extra {extra}, missing {missing})"
        )
    for seg in manifest.segments:
        got = received[seg.segment_id]
        if got.header != seg.header:
            raise BundleInvalid(
                f"header of segment {seg.segment_id!r} differs from the one the owner signed"
            )
        if got.payload_sha256 != seg.payload_sha256:
            raise BundleInvalid(f"payload of segment {seg.segment_id!r} does not match its hash")
        signed = front.signed_segments.get((seg.clip_id, seg.index))
        if signed is None or signed.payload_sha256 != seg.payload_sha256:
            raise BundleInvalid(
                f"payload hash of segment {seg.segment_id!r} is not the one the device signed"
            )
    checks.append(
        f"{len(manifest.segments)} segment payload SHA-256 hash(es) match the release manifest "
        "and the device-signed clip manifests; headers match the owner-signed manifest"
    )


def _check_audit(small: dict[str, bytes], front: _Front, checks: list[str]) -> None:
    dev_key, dev_id, release_id, claims = (
        front.device_key,
        front.device_id,
        front.release_id,
        front.claims,
    )
    origin = f"doorward/{dev_id}"
    try:
        checkpoint = open_checkpoint(
            _need(small, "audit/checkpoint.txt"), NoteVerifier(origin, dev_key)
        )
        inclusion = jws.loads_strict(_need(small, "audit/inclusion.json"), "inclusion.json")
        leaf = b64url_decode(inclusion["leaf"])
        index = inclusion["index"]
        if inclusion["tree_size"] != checkpoint.size:
            raise BundleInvalid("inclusion proof is for another tree size than the checkpoint")
        verify_inclusion(
            leaf_hash(leaf),
            index,
            checkpoint.size,
            decode_proof(inclusion["proof"]),
            checkpoint.root_hash,
        )
        entry = jws.loads_strict(leaf, "audit entry")
        owner_view = _check_owner_checkpoint(small, claims, checkpoint, index)
    except BundleInvalid:
        raise
    except (AuditError, ConsentError, ValueError, KeyError, TypeError) as exc:
        raise BundleInvalid(f"audit proof does not verify: {exc}") from exc
    if (
        not isinstance(entry, dict)
        or entry.get("kind") != "release.created"
        or _field(entry, "release_id") != release_id
        or _field(entry, "manifest_sha256") != claims["manifest_sha256"]
    ):
        raise BundleInvalid("the audit entry in the bundle is not this release's")
    checks.append(
        f"release entry #{index} is in the device's audit log (inclusion proof to the root of "
        f"the checkpoint of size {checkpoint.size} signed by {origin})"
    )
    if owner_view is not None:
        checks.append(
            f"the device's log extends the checkpoint of size {owner_view} the owner had verified "
            "when consenting (consistency proof), and the release entry was added after it"
        )


def _check_owner_checkpoint(
    small: dict[str, bytes], claims: dict[str, Any], checkpoint: Checkpoint, index: int
) -> int | None:
    """If the token names the checkpoint the owner verified, the bundle's tree must extend it,
    with the release entry after it; returns its size (None when the token names none)."""
    owner_view = claims.get("checkpoint")
    if owner_view is None:
        return None
    size, root = checkpoint_claim(owner_view)
    body = jws.loads_strict(_need(small, "audit/consistency.json"), "consistency.json")
    if (body["old_size"], body["new_size"]) != (size, checkpoint.size):
        raise BundleInvalid(
            "audit/consistency.json is not from the owner's checkpoint to the bundle's checkpoint"
        )
    verify_consistency(
        size, checkpoint.size, root, checkpoint.root_hash, decode_proof(body["proof"])
    )
    if index < size:
        raise BundleInvalid(
            f"release entry #{index} is inside the checkpoint of size {size} the owner verified "
            "before consenting: the log was rewritten"
        )
    return size


def _field(entry: dict[str, Any], name: str) -> Any:
    if name in entry:
        return entry[name]
    fields = entry.get("fields")
    return fields.get(name) if isinstance(fields, dict) else None


def _decrypt_all(
    manifest: ReleaseManifest,
    received: dict[str, _Received],
    identities: Sequence[age.Identity],
    out_dir: Path,
) -> tuple[list[SegmentResult], Path | None]:
    results = []
    plain_dir = out_dir / "segments"
    plain_dir.mkdir(exist_ok=True)
    plain_paths = []
    for n, seg in enumerate(manifest.segments):
        path = plain_dir / f"{n:06d}.ts"
        error = None
        try:
            with open(received[seg.segment_id].path, "rb") as src, open(path, "wb") as dst:
                age.decrypt(list(identities), src, dst)
        except CryptoError as exc:
            error = f"{type(exc).__name__}: {exc}"
            path.unlink(missing_ok=True)
        else:
            plain_paths.append(path)
        results.append(
            SegmentResult(
                seg.segment_id,
                seg.clip_id,
                seg.index,
                seg.payload_sha256,
                error is None,
                error,
                str(received[seg.segment_id].path),
            )
        )
    if not plain_paths:
        return results, None
    # MPEG-TS is a packet stream: segments cut at keyframes join by plain concatenation.
    video = out_dir / "release.ts"
    with open(video, "wb") as out:
        for path in plain_paths:
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    out.write(chunk)
    return results, video
