"""The release bundle: one tar stream with everything a requester needs to verify and decrypt.

Layout (all under ``doorward-release-<release id>/``)::

    README.txt                 how to verify and decrypt, for a person
    consent-token.jws          the owner's consent token (compact JWS, Ed25519)
    release-manifest.json      the exact manifest bytes whose SHA-256 the token signs
    device.json                device-signed: device id and key, release id, the signing owner's key
    clips/<clip id>.json       device-signed clip manifests (payload SHA-256 per segment)
    segments/<segment id>.age  each released segment: new header + the stored payload, a whole age file
    audit/checkpoint.txt       the device's signed audit checkpoint (C2SP tlog-checkpoint)
    audit/inclusion.json       the release entry, its index and its inclusion proof in that checkpoint
    audit/consistency.json     when the token carries the owner's verified checkpoint: the consistency
                               proof from that checkpoint's size to the bundle checkpoint's

Segments are streamed from the store files, never held whole in memory. A requester reads the
stream with :class:`BundleLimits` (``consent._bundle_tar``): a hostile device cannot make it hold
or store more than those limits allow.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from consent._merkle import encode_proof
from consent._release_manifest import parse_release_manifest
from consent.clips import ClipSource
from crypto import age
from crypto.keys import DeviceIdentity
from crypto.signed import b64url, sign_document

__all__ = ["BUNDLE_README", "BundleLimits", "bundle_root", "write_bundle"]

_MTIME = 0  # fixed, so a bundle's bytes depend only on its contents

BUNDLE_README = """\
Doorward release bundle
=======================

This archive holds footage that the owner of a Doorward doorbell agreed to release to you, and
everything needed to check that it is genuine. `doorward requester fetch` does all of the checks
below for you and writes a verification report; this note says how to do it by hand.

What is inside
--------------
- consent-token.jws: the owner's signed consent. Its payload (the middle part, base64url JSON)
  names the device (aud), you (sub, your key id), the request, an expiry, how many downloads
  are allowed and the SHA-256 of release-manifest.json.
- release-manifest.json: the list of released segments, each with its new age header and the
  SHA-256 of its encrypted payload.
- device.json: signed by the doorbell's own key; it names the device and the owner key that
  signed the consent.
- clips/*.json: the doorbell's signed description of each clip (times, camera and, for every
  segment, the SHA-256 of its encrypted payload).
- segments/*.age: the video segments, encrypted to your age key only.
- audit/: the doorbell's signed audit checkpoint and a proof that this release is recorded in
  its append-only log; when the token names the checkpoint the owner had verified, a proof that
  the log grew from that one without any change.

Decrypting with the age tool
----------------------------
Each file in segments/ is a standard age file (https://age-encryption.org). With the identity
file that holds the age key you named in your request:

    age --decrypt -i requester.key -o segment.ts segments/<segment>.age

Joining the decrypted segments in the order of release-manifest.json gives one MPEG-TS video:

    cat seg1.ts seg2.ts seg3.ts > release.ts

Checking it
-----------
1. SHA-256 of release-manifest.json must equal manifest_sha256 in the token.
2. The token's signature must verify with the owner key listed in device.json.
3. For every segment, the bytes after the age header must hash to the payload_sha256 in both
   the release manifest and the doorbell-signed clip file; this shows the video is exactly what
   the doorbell recorded (re-wrapping the key for you changes only the header).
4. The audit proof must lead from the release entry to the root hash in the signed checkpoint.
5. If the token has a "checkpoint" claim, audit/consistency.json must prove (RFC 9162) that the
   signed checkpoint extends that size and root hash: the log the owner saw.

If a segment does not decrypt, its header was not made for your key: report it to the owner.
"""


@dataclass(frozen=True, slots=True)
class BundleLimits:
    """How much a requester reads, holds and stores for one bundle; past a limit it is refused.

    The defaults fit any real release (1000 segments of a few MB each); each limit stops one way a
    hostile device could exhaust the requester's memory or disk. Segments are also held to the size
    in their device-signed clip manifest."""

    max_bundle_bytes: int = 2 * 1024**3  # the whole tar stream, download included
    max_members: int = 2100  # 1000 segments, their clip manifests and the fixed files
    max_extended_header_bytes: int = 4096  # one PAX or GNU long-name header (a path is ~100)
    max_small_member_bytes: int = 4 * 1024 * 1024  # one JSON, token, checkpoint or README
    max_small_total_bytes: int = 32 * 1024 * 1024  # all of them together (they are held in RAM)

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


def bundle_root(release_id: str) -> str:
    """The top directory of a bundle."""
    return f"doorward-release-{release_id}"


def write_bundle(
    dst: BinaryIO,
    *,
    device: DeviceIdentity,
    release_id: str,
    token: str,
    manifest: bytes,
    owner_key_id: str,
    owner_public: str,
    clips: ClipSource,
    clip_manifests: Mapping[str, bytes],
    checkpoint: str,
    leaf: bytes,
    leaf_index: int,
    tree_size: int,
    proof: Sequence[bytes],
    consistency: tuple[int, Sequence[bytes]] | None = None,
) -> None:
    """Stream a release bundle to ``dst`` (a writable binary file, need not be seekable).

    ``clip_manifests`` are the device-signed clip manifests as the owner approved them; segment
    payloads are read from ``clips``. ``consistency`` is (old size, proof) from the checkpoint
    the owner verified (its token's ``checkpoint`` claim) to ``tree_size``."""
    parsed = parse_release_manifest(manifest)
    root = bundle_root(release_id)
    device_doc = sign_document(
        {
            "type": "doorward-release-keys",
            "device_id": device.device_id,
            "release_id": release_id,
            "owners": [{"key_id": owner_key_id, "ed25519": owner_public}],
        },
        device.private_key,
    )
    inclusion = {
        "leaf": b64url(leaf),
        "index": leaf_index,
        "tree_size": tree_size,
        "proof": encode_proof(list(proof)),
    }
    with tarfile.open(fileobj=dst, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, f"{root}/README.txt", BUNDLE_README.encode())
        _add_bytes(tar, f"{root}/consent-token.jws", token.encode("ascii"))
        _add_bytes(tar, f"{root}/release-manifest.json", manifest)
        _add_bytes(tar, f"{root}/device.json", _json(device_doc))
        for clip_id in sorted(parsed.clip_manifests):
            _add_bytes(tar, f"{root}/clips/{clip_id}.json", clip_manifests[clip_id])
        for segment in parsed.segments:
            _add_segment(
                tar,
                f"{root}/segments/{segment.segment_id}.age",
                segment.header,
                clips.segment_path(segment.segment_id),
            )
        _add_bytes(tar, f"{root}/audit/checkpoint.txt", checkpoint.encode())
        _add_bytes(tar, f"{root}/audit/inclusion.json", _json(inclusion))
        if consistency is not None:
            old_size, steps = consistency
            body = {"old_size": old_size, "new_size": tree_size, "proof": encode_proof(list(steps))}
            _add_bytes(tar, f"{root}/audit/consistency.json", _json(body))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = _MTIME
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_segment(tar: tarfile.TarFile, name: str, header: bytes, path: Path) -> None:
    with open(path, "rb") as f:
        age.read_header(f)  # skip the stored header: the owners' stanzas never leave the device
        payload_start = f.tell()
        payload_size = Path(path).stat().st_size - payload_start
        info = tarfile.TarInfo(name)
        info.size = len(header) + payload_size
        info.mtime = _MTIME
        info.mode = 0o644
        tar.addfile(info, _Concat(header, f))


class _Concat(io.RawIOBase):
    """Reads ``head`` then the rest of ``tail``."""

    def __init__(self, head: bytes, tail: BinaryIO) -> None:
        self._head = memoryview(head)
        self._tail = tail

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        # Fill the request fully: tarfile treats a short read as the end of the data.
        n = len(self._head) if size < 0 else min(size, len(self._head))
        chunk = bytes(self._head[:n])
        self._head = self._head[n:]
        if size < 0:
            return chunk + self._tail.read()
        return chunk + self._tail.read(size - n) if size > n else chunk


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, indent=2).encode() + b"\n"
