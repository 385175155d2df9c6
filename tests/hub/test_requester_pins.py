"""`doorward requester fetch` and `verify` check a bundle against the device key the profile pinned
(or `--device-key`), not against the key the bundle brings along; a device id alone is not a key.

A device id is 80 bits of a hash of the device key, so a device that makes two keys with the same
id (about 2^40 work) could sign with either. The tests stand in for that collision by pinning the
id of key B with the TLS key or the Ed25519 key A: under the old check (ids only) the B bundle was
VERIFIED."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crypto.keys import DeviceIdentity, KeyBundle
from crypto.signed import b64url
from hub.cli import cmd_requester
from hub.client.profile import PinnedDevice, Profile
from hub.server.state import Device
from tests.hub.hostile_device import genuine_bundle, release_app, serving


@pytest.fixture(scope="module")
def owner() -> KeyBundle:
    return KeyBundle.generate("x25519")


@pytest.fixture(scope="module")
def requester() -> KeyBundle:
    return KeyBundle.generate("x25519")


def _profile(directory: Path, requester: KeyBundle, *devices: PinnedDevice) -> Path:
    profile = Profile(directory, "requester")
    identity = {
        "name": "Officer Dana Reyes",
        "organisation": "Springfield Police Department",
        "kind": "local_agency",
        "jurisdiction": "",
        "contact": "",
    }
    profile.create(requester, {"identity": identity, "recipient_kind": "x25519"})
    for device in devices:
        profile.pin(device)
    return directory


def _key(identity: DeviceIdentity) -> str:
    return b64url(identity.public_key.public_bytes_raw())


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cmd_requester.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_fetch_refuses_a_bundle_signed_by_another_key_than_the_pinned_tls_key(
    tmp_path: Path, owner: KeyBundle, requester: KeyBundle, capsys: pytest.CaptureFixture[str]
) -> None:
    """The device answers over the pinned TLS key A but hands over a bundle signed by key B
    that carries the device id the request went to."""
    tls = Device.open(tmp_path / "device-a")
    other = DeviceIdentity.generate()
    bundle = genuine_bundle(tmp_path / "world-b", other, owner, requester)
    try:
        with serving(release_app(bundle), tls.ssl_context()) as url:
            pin = PinnedDevice(other.device_id, tls.fingerprint, url)
            profile = _profile(tmp_path / "profile", requester, pin)
            code, out, err = _run(
                capsys, "fetch", "rel-0001", "--profile", str(profile), "--out", str(tmp_path / "o")
            )
    finally:
        tls.close()
    assert (code, out) == (1, "")
    assert err.endswith(
        "failed verification: device.json is signed by another key than the device you pinned "
        "(not the key of its pinned TLS fingerprint)\n"
    )
    assert not (tmp_path / "o" / "report.txt").exists()


def test_fetch_from_the_pinned_device_verifies_and_pins_its_key(
    tmp_path: Path, owner: KeyBundle, requester: KeyBundle, capsys: pytest.CaptureFixture[str]
) -> None:
    """The genuine case: the bundle's key is the TLS key; fetch then remembers that key, and a
    later bundle from a device whose key changed is refused even offline."""
    device = Device.open(tmp_path / "device")
    bundle = genuine_bundle(tmp_path / "world", device.identity, owner, requester)
    try:
        with serving(release_app(bundle), device.ssl_context()) as url:
            pin = PinnedDevice(device.identity.device_id, device.fingerprint, url)
            profile = _profile(tmp_path / "profile", requester, pin)
            code, out, err = _run(
                capsys,
                "fetch",
                "rel-0001",
                "--profile",
                str(profile),
                "--out",
                str(tmp_path / "o"),
                "--json",
            )
    finally:
        device.close()
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert (result["ok"], result["device_key_pinned"]) == (True, True)
    [stored] = Profile(profile, "requester").devices()
    assert stored.signing_key is not None
    assert stored.signing_key.public_bytes_raw() == device.identity.public_key.public_bytes_raw()

    # The device's key changed (same id, as with a colliding key): the pinned key refuses it.
    changed = DeviceIdentity.generate()
    resigned = genuine_bundle(tmp_path / "world-changed", changed, owner, requester)
    pins = json.loads((profile / "devices.json").read_text())
    pins["devices"][0]["device_id"] = changed.device_id
    (profile / "devices.json").write_text(json.dumps(pins))
    (tmp_path / "changed.tar").write_bytes(resigned)
    code, out, err = _run(
        capsys, "verify", str(tmp_path / "changed.tar"), "--profile", str(profile)
    )
    assert (code, out) == (1, "")
    assert err.endswith(
        "failed verification: device.json is signed by another key than the device you pinned\n"
    )


def test_verify_refuses_a_bundle_from_a_device_never_pinned(
    tmp_path: Path, owner: KeyBundle, requester: KeyBundle, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any self-consistent bundle used to print VERIFIED: a stranger's key proves nothing."""
    stranger = DeviceIdentity.generate()
    (tmp_path / "b.tar").write_bytes(genuine_bundle(tmp_path / "w", stranger, owner, requester))
    profile = _profile(tmp_path / "profile", requester)
    code, out, err = _run(capsys, "verify", str(tmp_path / "b.tar"), "--profile", str(profile))
    assert (code, out) == (1, "")
    assert err == (
        f"doorward: error: release bundle {tmp_path / 'b.tar'} says it comes from device "
        f"{stranger.device_id}, which {profile} has not pinned, so nothing shows who signed it: "
        "pass --device-key=KEY with the device's Ed25519 key (ask its owner), or fetch releases "
        "with 'doorward requester fetch'\n"
    )
    assert not (tmp_path / "b" / "report.txt").exists()


def test_verify_with_device_key(
    tmp_path: Path, owner: KeyBundle, requester: KeyBundle, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--device-key`` pins a device never contacted: its own bundle verifies, a bundle
    re-signed by another key (however consistent) is refused."""
    device = DeviceIdentity.generate()
    (tmp_path / "b.tar").write_bytes(genuine_bundle(tmp_path / "w", device, owner, requester))
    profile = _profile(tmp_path / "profile", requester)
    code, out, err = _run(
        capsys,
        "verify",
        str(tmp_path / "b.tar"),
        f"--device-key={_key(device)}",
        "--profile",
        str(profile),
    )
    assert (code, err) == (0, "")
    assert out.startswith("release rel-0001: VERIFIED; 3/3 segments decrypted\n")

    other = DeviceIdentity.generate()
    code, out, err = _run(
        capsys,
        "verify",
        str(tmp_path / "b.tar"),
        f"--device-key={_key(other)}",
        "--profile",
        str(profile),
    )
    assert (code, out) == (1, "")
    assert err.endswith("device.json is signed by another key than the device you pinned\n")

    code, out, err = _run(
        capsys,
        "verify",
        str(tmp_path / "b.tar"),
        "--device-key=not-a-key",
        "--profile",
        str(profile),
    )
    assert (code, out) == (1, "")
    assert err.startswith("doorward: error: --device-key is not an Ed25519 key: ")
