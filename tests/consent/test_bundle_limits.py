"""A hostile device cannot exhaust the requester's memory or disk with a bundle: tar headers are read
with bounded sizes, small members are capped one by one and in total, a segment may not be larger
than its device-signed clip manifest says, and the whole bundle has a cap."""

from __future__ import annotations

import io
import re
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from consent.bundle import BundleLimits
from consent.errors import BundleInvalid
from consent.requester import open_bundle
from crypto.keys import DeviceIdentity, KeyBundle
from tests.consent.kit import World
from tests.consent.test_flow import run_flow

_MIB = 1024 * 1024
# How much memory a refused hostile bundle may cost: far less than the header it announces.
_MEMORY_BOUND = 2 * _MIB


class _Hostile(io.RawIOBase):
    """A tar stream that starts with ``head`` and then announces ``announced`` bytes of zeros,
    made on demand so the test itself never holds them; counts what the reader consumed."""

    def __init__(self, head: bytes, announced: int) -> None:
        self._head = head
        self._left = announced
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        n = 0
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
        elif self._left > 0:
            n = min(len(view), self._left)
            view[:n] = bytes(n)
            self._left -= n
        self.consumed += n
        return n


def _extended_header(kind: bytes, size: int) -> bytes:
    """A single tar header block of type ``kind`` (``x`` PAX, ``L`` GNU long name) of ``size``."""
    info = tarfile.TarInfo("doorward-release-x/././@PaxHeader")
    info.size = size
    info.type = kind
    return info.tobuf(format=tarfile.GNU_FORMAT if kind == b"L" else tarfile.USTAR_FORMAT)[:512]


def _open(src, requester: KeyBundle, out: Path, device: DeviceIdentity | None = None, **kw):
    return open_bundle(
        src,
        [requester.age_identity],
        out,
        requester_key_id=requester.key_id,
        device_key=device.public_key if device else None,
        **kw,
    )


@pytest.mark.parametrize(("kind", "what"), [(b"x", "PAX"), (b"L", "GNU long name")])
def test_huge_extended_header_is_refused_with_bounded_memory(
    requester: KeyBundle, tmp_path: Path, kind: bytes, what: str
) -> None:
    """The attack: a 64 MiB PAX (or GNU long-name) header; tarfile reads it whole into memory.
    Now it is refused from its 512-byte header block, before any of its content is read."""
    hostile = _Hostile(_extended_header(kind, 64 * _MIB), 64 * _MIB)
    tracemalloc.start()
    try:
        with pytest.raises(BundleInvalid) as info:
            _open(hostile, requester, tmp_path / "out")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(info.value) == (
        f"bundle has a {what} header of {64 * _MIB} bytes; at most "
        f"{BundleLimits().max_extended_header_bytes} are allowed"
    )
    assert peak < _MEMORY_BOUND
    assert hostile.consumed <= 64 * 1024  # refused from the first blocks, not after reading on


def test_small_extended_header_still_reads(
    world: World, owner: KeyBundle, requester: KeyBundle, device: DeviceIdentity, tmp_path: Path
) -> None:
    """PAX headers within the bound (long names, as tarfile writes them) are honoured."""
    bundle = run_flow(world, owner, requester, device)[3]
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in members:
            member.pax_headers = {"comment": "é" * 200}  # forces a PAX header on every member
            tar.addfile(member, io.BytesIO(data))
    assert _open(io.BytesIO(buf.getvalue()), requester, tmp_path / "out", device).ok


def test_segment_larger_than_signed_is_refused_before_it_is_stored(
    world: World, owner: KeyBundle, requester: KeyBundle, device: DeviceIdentity, tmp_path: Path
) -> None:
    """A segment member of 32 MiB where the device-signed clip manifest says a few KiB: refused
    from its tar header, and nothing of it reaches the disk."""
    bundle = run_flow(world, owner, requester, device)[3]
    buf = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(bundle)) as src,
        tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as dst,
    ):
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.endswith("clip-0001.000002.age"):
                data += bytes(32 * _MIB)
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    buf.seek(0)
    tracemalloc.start()
    try:
        with pytest.raises(BundleInvalid) as info:
            _open(buf, requester, tmp_path / "out", device)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert re.fullmatch(
        r"segment 'clip-0001\.000002' is \d+ bytes; its device-signed clip manifest allows "
        r"at most \d+",
        str(info.value),
    )
    stored = sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert stored < _MIB
    assert peak < _MEMORY_BOUND


def test_bundle_over_the_cap_is_refused(
    world: World, owner: KeyBundle, requester: KeyBundle, device: DeviceIdentity, tmp_path: Path
) -> None:
    bundle = run_flow(world, owner, requester, device)[3]
    limits = BundleLimits(max_bundle_bytes=16 * 1024)
    with pytest.raises(BundleInvalid) as info:
        _open(io.BytesIO(bundle), requester, tmp_path / "out", device, limits=limits)
    assert str(info.value) == (
        "bundle is larger than 16384 bytes, the most this requester accepts "
        "(raise the limit with --max-size if the release is really that large)"
    )


def test_small_members_are_capped_in_total(
    world: World, owner: KeyBundle, requester: KeyBundle, device: DeviceIdentity, tmp_path: Path
) -> None:
    """Many small members that are each under the per-member cap still add up to a cap."""
    bundle = run_flow(world, owner, requester, device)[3]
    limits = BundleLimits(max_small_member_bytes=8 * 1024, max_small_total_bytes=12 * 1024)
    buf = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(bundle)) as src,
        tarfile.open(fileobj=buf, mode="w") as dst,
    ):
        root = src.getnames()[0].split("/")[0]
        for n in range(4):
            info = tarfile.TarInfo(f"{root}/extra-{n}.txt")
            info.size = 4 * 1024
            dst.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(BundleInvalid) as info:
        _open(io.BytesIO(buf.getvalue()), requester, tmp_path / "out", device, limits=limits)
    assert str(info.value) == (
        "bundle's small files (token, manifests, proofs) add up to more than 12288 bytes"
    )
