"""`doorward demo` as a user runs it (it starts `doorward serve` and the CLIs as processes), then
the artefacts it leaves are checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import pytest

from crypto import age
from crypto.errors import NoIdentityMatched

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_demo_runs_the_story_and_leaves_checkable_artefacts(tmp_path: Path, age_cli: str) -> None:
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "hub.cli.main", "demo", "--dir", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "every check passed" in run.stdout
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "data_dir",
        "owner_identity",
        "requester_identity",
        "bundle",
        "released_segments",
        "video",
        "report",
        "checkpoint",
    ):
        assert summary[key], key
    assert summary["federal_request_refused"].endswith("(rule requester_kind)")
    assert summary["plaintext_files_on_device"] == []
    segments = list(Path(summary["data_dir"]).rglob("*.ts.age"))
    assert len(segments) == summary["segments_recorded"]

    # The requester's key file works with the age CLI on every released segment; the owner's
    # key does not open them any more.
    released = [Path(p) for p in summary["released_segments"]]
    assert 0 < len(released) < summary["segments_recorded"]
    owner = age.parse_identities(Path(summary["owner_identity"]).read_text())
    for path in released:
        clear = subprocess.run(
            [age_cli, "-d", "-i", summary["requester_identity"], str(path)],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        assert clear[:1] == b"\x47"  # an MPEG-TS packet
        try:
            age.decrypt_bytes(owner, path.read_bytes())
        except NoIdentityMatched:
            pass
        else:
            raise AssertionError(f"the owner's key opened the released copy {path}")

    # The joined video decodes, and the owner kept a verified audit checkpoint.
    with av.open(summary["video"]) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames > 0
    report = json.loads(Path(summary["report"]).read_text())
    assert report["ok"] is True
    checkpoint = Path(summary["checkpoint"]).read_text()
    assert checkpoint.startswith(f"doorward/{summary['device_id']}\n")
    # The fetch is on the record: authorised (counted), then sent whole.
    assert summary["audit_entries"][-2:] == ["release.downloaded", "release.sent"]


def test_demo_with_backup_restores_the_stolen_doorbells_clips_from_the_bucket(
    tmp_path: Path,
) -> None:
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "hub.cli.main", "demo", "--backup", "--dir", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert run.returncode == 0, run.stderr + run.stdout[-2000:]
    assert "A thief takes the doorbell" in run.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert not Path(summary["data_dir"]).exists()  # the doorbell's data is gone...
    backup = summary["backup"]
    assert backup["ok"] is True
    restored = Path(backup["restored"][summary["clip"]])  # ...and its clip came back
    assert restored.is_file()
    assert backup["seconds"][summary["clip"]] > 4.0
    with av.open(str(restored)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames > 60
    # The doorbell's keys could write the bucket but the demo's folder holds them 0600.
    assert (out / "doorbell-s3-credentials").stat().st_mode & 0o077 == 0
