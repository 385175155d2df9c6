"""CLI profiles (keys 0600, pinned devices, requester bookkeeping) and the small CLI helpers."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from crypto.keys import KeyBundle
from hub.cli.common import iso, parse_duration, parse_time
from hub.cli.progress import Progress, ProgressWriter
from hub.client.profile import PinnedDevice, Profile, ProfileError, default_profile_dir

pytestmark = pytest.mark.timeout(30)

FP = "c3w4ipRaNd1Q_cFrouHcBJp6oESoeUwsMtDc9cjbqA8"


def _device(device_id: str, url: str = "https://127.0.0.1:8443") -> PinnedDevice:
    keys = KeyBundle.generate("x25519")
    return PinnedDevice(device_id, FP, url, signing_key=keys.signing_key.public_key())


def test_create_writes_secret_keys_and_refuses_to_overwrite(tmp_path: Path) -> None:
    profile = Profile(tmp_path / "owner", "owner")
    assert not profile.exists()
    keys = KeyBundle.generate("x25519")
    profile.create(keys, {"name": "Ada"})
    assert profile.info() == {"kind": "owner", "name": "Ada"}
    assert profile.keys().key_id == keys.key_id
    for name in ("signing.ed25519", "age.key"):
        assert (profile.directory / name).stat().st_mode & 0o077 == 0
    assert profile.identity_path.read_text().endswith(keys.age_identity.to_secret_string() + "\n")
    with pytest.raises(ProfileError) as raised:
        profile.create(KeyBundle.generate("x25519"), {})
    assert str(raised.value) == (
        f"a profile already exists in {profile.directory}; use --profile DIR for another"
    )
    assert profile.keys().key_id == keys.key_id


def test_a_missing_or_other_kind_profile_says_what_to_run(tmp_path: Path) -> None:
    missing = Profile(tmp_path / "nothing", "requester")
    with pytest.raises(ProfileError) as raised:
        missing.keys()
    assert str(raised.value) == (
        f"no requester profile in {missing.directory}; run 'doorward requester init' first"
    )
    Profile(tmp_path / "p", "owner").create(KeyBundle.generate("x25519"), {})
    with pytest.raises(ProfileError) as raised:
        Profile(tmp_path / "p", "requester").info()
    assert str(raised.value) == f"{tmp_path / 'p'} holds a profile of kind 'owner', not 'requester'"


def test_pinned_devices_round_trip_and_replace_by_id(tmp_path: Path) -> None:
    profile = Profile(tmp_path, "owner")
    first = _device("aaaaaaaaaaaaaaaa")
    profile.pin(first)
    assert profile.device() == first
    moved = PinnedDevice(first.device_id, FP, "https://10.0.0.5:8443")
    profile.pin(moved)
    assert profile.devices() == [moved]
    assert moved.signing_key is None
    assert json.loads((tmp_path / "devices.json").read_text())["devices"][0]["ed25519"] is None


def test_device_choice_errors(tmp_path: Path) -> None:
    profile = Profile(tmp_path, "owner")
    with pytest.raises(ProfileError) as raised:
        profile.device()
    assert str(raised.value) == (
        f"no device is pinned in {tmp_path}; run 'doorward owner pair' first"
    )
    profile.pin(_device("aaaaaaaaaaaaaaaa"))
    profile.pin(_device("bbbbbbbbbbbbbbbb"))
    with pytest.raises(ProfileError) as raised:
        profile.device()
    assert str(raised.value) == (
        "several devices are pinned (aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb); "
        "choose one with --device ID"
    )
    assert profile.device("bbbbbbbbbbbbbbbb").device_id == "bbbbbbbbbbbbbbbb"
    with pytest.raises(ProfileError) as raised:
        profile.device("cccccccccccccccc")
    assert str(raised.value) == (
        f"device 'cccccccccccccccc' is not pinned in {tmp_path}; pair with it first"
    )


def test_requester_remembers_where_requests_and_releases_went(tmp_path: Path) -> None:
    profile = Profile(tmp_path, "requester")
    assert profile.device_of("requests", "r1") is None
    profile.remember("requests", "r1", "aaaaaaaaaaaaaaaa")
    profile.remember("releases", "x1", "bbbbbbbbbbbbbbbb")
    assert profile.device_of("requests", "r1") == "aaaaaaaaaaaaaaaa"
    assert profile.device_of("releases", "x1") == "bbbbbbbbbbbbbbbb"
    assert profile.device_of("releases", "r1") is None


def test_corrupt_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "devices.json").write_text("[1, 2")
    with pytest.raises(ProfileError, match=r"devices\.json is not valid JSON: "):
        Profile(tmp_path, "owner").devices()
    (tmp_path / "devices.json").write_text('{"devices": [{"url": "https://x"}]}')
    with pytest.raises(ProfileError) as raised:
        Profile(tmp_path, "owner").devices()
    assert str(raised.value) == "pinned device record is malformed: 'device_id'"


def test_default_directory_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_profile_dir("owner") == tmp_path / "doorward" / "owner" / "default"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_profile_dir("requester", "police") == (
        tmp_path / "home" / ".config" / "doorward" / "requester" / "police"
    )


def test_checkpoint_path_is_per_device(tmp_path: Path) -> None:
    profile = Profile(tmp_path, "owner")
    path = profile.checkpoint_path("aaaaaaaaaaaaaaaa")
    assert path == tmp_path / "audit" / "aaaaaaaaaaaaaaaa.checkpoint"
    assert path.parent.is_dir()


def test_durations_and_times() -> None:
    assert [parse_duration(t) for t in ("90s", "15m", "12h", "7d")] == [90, 900, 43200, 604800]
    for bad in ("7", "0d", "1w", "-1h"):
        with pytest.raises(argparse.ArgumentTypeError) as raised:
            parse_duration(bad)
        assert str(raised.value) == (
            f"duration must be a positive number with s, m, h or d (7d), got {bad!r}"
        )
    assert parse_time("2026-01-31T18:00:00Z") == 1769882400.0
    assert parse_time("2026-01-31T19:00:00+01:00") == 1769882400.0
    assert parse_time("2026-01-31T18:00:00") == 1769882400.0
    assert parse_time("1769882400") == 1769882400.0
    with pytest.raises(argparse.ArgumentTypeError) as raised:
        parse_time("yesterday")
    assert str(raised.value) == (
        "time must be ISO 8601 (2026-01-31T18:00:00Z) or seconds since 1970, got 'yesterday'"
    )
    assert iso(1769882400) == "2026-01-31T18:00:00Z"
    assert iso(None) == "-"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_only_on_a_terminal() -> None:
    quiet = io.StringIO()
    sink = io.BytesIO()
    progress = Progress("release r1", out=quiet)
    ProgressWriter(sink, progress).write(b"x" * 3000)
    progress.close()
    assert (quiet.getvalue(), sink.getvalue(), progress.done) == ("", b"x" * 3000, 3000)

    tty = _Tty()
    progress = Progress("release r1", total=4 * 1024 * 1024, out=tty)
    progress.update(1024 * 1024)
    assert progress.render() == f"release r1: 1.0 MB [{'#' * 6}{' ' * 18}] 25%"
    progress.close()
    assert tty.getvalue().startswith("\rrelease r1: 1.0 MB [")
    assert tty.getvalue().endswith("25%\n")
