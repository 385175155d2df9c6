"""The owner and requester CLIs against ``doorward serve``, all as separate processes over real TLS.

The camera is a short H.264 file played in a loop in real time: a grey door with a bright square
crossing it once per loop, so every loop records one clip (motion → post-roll → idle).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from crypto.setup_code import PairingURI
from hub.client import Clip
from hub.client.profile import Profile

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
SERVE_CONFIG = "pre_roll_s = 1.0\npost_roll_s = 2.0\nsegment_s = 1.0\n"
WRONG_CODE_ERROR = (
    "doorward: error: pairing failed: the setup code was typed wrong, or someone tried to guess "
    "it; check the code on the doorbell and try again\n"
)


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    uri: PairingURI
    uri_text: str
    data_dir: Path
    home: Path

    def cli(self, group: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """``doorward GROUP ARGS`` in a fresh process (profiles under this test's config home)."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CONFIG_HOME": str(self.home)}
        return subprocess.run(
            [sys.executable, "-m", "hub.cli.main", group, *args],
            cwd=self.home,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ok(self, group: str, *args: str, here: bool = False) -> dict[str, Any]:
        """Run a command with ``--json``; it must succeed and print exactly one JSON object.

        ``here`` runs it in this process (same code, same TLS to the served device): the commands
        the story needs only as checks stay fast, since each new process imports the whole hub.
        """
        run = self.inline(group, *args, "--json") if here else self.cli(group, *args, "--json")
        assert run.returncode == 0, run.stderr
        [line] = run.stdout.splitlines()
        result: dict[str, Any] = json.loads(line)
        return result

    def inline(self, group: str, *args: str) -> subprocess.CompletedProcess[str]:
        module = importlib.import_module(f"hub.cli.cmd_{group}")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = module.main(list(args))
        return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _door_video(path: Path) -> None:
    """Six seconds at 10 fps: still for 2 s, a square crosses in 1.5 s, still again (GOP 0.5 s)."""
    width, height, fps = 320, 240, 10
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": "5", "keyint_min": "5", "sc_threshold": "0", "bf": "0"}
        for i in range(6 * fps):
            image = np.full((height, width, 3), 90, np.uint8)
            t = i / fps
            if 2 <= t < 3.5:
                x = int((t - 2) / 1.5 * (width - 100))
                image[70:170, x : x + 100] = 235
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    video = tmp_path / "door.mp4"
    _door_video(video)
    config = tmp_path / "serve.toml"
    config.write_text(SERVE_CONFIG)
    data_dir = tmp_path / "data"
    command = [
        sys.executable,
        "-m",
        "hub.cli.cmd_serve",
        "--config",
        str(config),
        "--data",
        str(data_dir),
        "--camera",
        f"front={video}",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-advertise",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        uri_text = url = ""
        for line in process.stdout:
            if line.strip().startswith("pairing URI:"):
                uri_text = line.split("pairing URI:", 1)[1].strip()
            if line.startswith("doorward: serving "):
                url = line.split()[2]
                break
        assert url, "doorward serve did not start"
        assert uri_text, "doorward serve printed no pairing URI"
        home = tmp_path / "home"
        home.mkdir()
        yield Served(process, url, PairingURI.parse(uri_text), uri_text, data_dir, home)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()


def _finished_clip(profile_dir: Path) -> Clip:
    """The next clip of at least three segments to finish, from the owner's event stream (the
    looping camera finishes one every six seconds)."""
    from hub.cli.common import client_for

    profile = Profile(profile_dir, "owner")
    keys, device = profile.keys(), profile.device()

    async def wait() -> Clip:
        async with client_for(device, keys.signing_key) as api:
            async for event in api.events(("clip.finished",)):
                clip = await api.clip(event.data["clip_id"])
                if clip.segment_count >= 3:
                    return clip
        raise AssertionError("the event stream ended before a clip finished")

    return asyncio.run(asyncio.wait_for(wait(), 90))


@pytest.mark.slow
def test_owner_and_requester_run_the_story(served: Served) -> None:
    owner = served.ok("owner", "init", "--name", "Ada's laptop")
    owner_dir = served.home / "doorward" / "owner" / "default"
    assert owner["profile"] == str(owner_dir)
    as_owner = ("--profile", str(owner_dir))

    # A mistyped setup code fails with one line and is counted on the device.
    digits = served.uri.code.digits()
    wrong = f"{(int(digits[0]) + 1) % 10}{digits[1:]}"
    failed = served.cli("owner", "pair", served.uri_text.replace(f"c={digits}", f"c={wrong}"))
    assert (failed.returncode, failed.stdout) == (1, "")
    assert _error_line(failed) == WRONG_CODE_ERROR
    assert digits not in failed.stderr
    assert wrong not in failed.stderr
    assert _pairing_failures(served) == 1

    # Given on standard input ('-'), the setup URI stays out of the process list.
    run = served.cli("owner", "pair", "-", "--json", stdin=served.uri_text + "\n")
    assert run.returncode == 0, run.stderr
    paired = json.loads(run.stdout)
    assert (paired["device_id"], paired["fingerprint"], paired["url"]) == (
        served.uri.device_id,
        served.uri.fingerprint,
        served.url,
    )
    assert _pairing_failures(served) == 0

    clip = _finished_clip(owner_dir)
    listed = served.ok("owner", "clips", "--camera", "front", *as_owner, here=True)["clips"]
    assert clip.clip_id in [c["clip_id"] for c in listed]
    view = served.home / "clip.mp4"
    shown = served.ok("owner", "view", clip.clip_id, "--out", str(view), *as_owner, here=True)
    assert shown["segments"] == clip.segment_count
    with av.open(str(view)) as container:
        assert "mp4" in container.format.name
        assert sum(1 for _ in container.decode(video=0)) > 0

    # A local police department asks for the clip's window.
    served.ok(
        "requester",
        "init",
        "--name",
        "Det. R. Alvarez",
        "--organisation",
        "Springfield Police Department",
        "--kind",
        "local_agency",
        "--jurisdiction",
        "Springfield",
        "--contact",
        "records@springfield.example",
    )
    as_police = ("--profile", str(served.home / "doorward" / "requester" / "default"))
    window = [str(int(clip.start_s) - 5), str(int(clip.end_s or clip.start_s) + 5)]
    ask = [
        served.url,
        f"--fingerprint={served.uri.fingerprint}",  # base64url may begin with "-"
        "--device-id",
        served.uri.device_id,
        "--camera",
        "front",
        "--start",
        window[0],
        "--end",
        window[1],
        "--category",
        "package_theft",
        "--case",
        "SPD-2026-1142",
        "--reason",
        "a parcel was taken from a porch on this street",
        "--legal-basis",
        "voluntary",
    ]
    asked = served.ok("requester", "ask", *ask)
    assert asked["status"] == "pending"
    request_id = asked["request_id"]

    # A federal agency's request is refused by the default policy, naming the rule.
    federal = ("--profile", str(served.home / "federal"))
    served.ok(
        "requester",
        "init",
        *federal,
        "--name",
        "Agent K. Lee",
        "--kind",
        "federal_agency",
        here=True,
    )
    refused = served.cli("requester", "ask", *federal, *ask)
    assert (refused.returncode, refused.stdout) == (1, "")
    line = _error_line(refused).rstrip("\n")
    assert line.startswith("doorward: error: request ")
    assert line.endswith(
        " declined by the owner's policy: the owner refuses requests from federal_agency "
        "(rule requester_kind)"
    )

    [pending] = served.ok("owner", "requests", "--pending")["requests"]
    assert (pending["request_id"], pending["organisation"], pending["kind"]) == (
        request_id,
        "Springfield Police Department",
        "local_agency",
    )

    # The owner checks the log before deciding: the pairing, the requests, the sealed clip.
    first = served.ok("owner", "audit")
    assert (first["verified"], first["previous_size"]) == (True, 0)
    kinds = [e["kind"] for e in first["entries"]]
    for kind in ("owner.added", "request.pending", "clip.sealed"):
        assert kind in kinds
    assert [e["rule"] for e in first["entries"] if "rule" in e] == ["requester_kind"]
    # A slow machine may have sealed a second clip by now; the one the owner saw is logged.
    sealed = {e["clip_id"]: e for e in first["entries"] if e["kind"] == "clip.sealed"}
    assert sealed[clip.clip_id]["camera"] == "front"

    # Approval asks first; anything but "yes" releases nothing.
    segments = f"{clip.clip_id}.000001,{clip.clip_id}.000002"
    cancelled = served.cli("owner", "approve", request_id, "--segments", segments, stdin="no\n")
    assert (cancelled.returncode, cancelled.stdout) == (1, "")
    assert cancelled.stderr.splitlines() == [
        "Releasing 2 segment(s) to Det. R. Alvarez (Springfield Police Department), up to 1 "
        "download(s). Releases cannot be unsent: once downloaded, the requester keeps the video.",
        "Type 'yes' to approve: ",
        "doorward: error: approval cancelled; nothing was released",
    ]
    approved = served.ok(
        "owner", "approve", request_id, "--segments", segments, "--max-downloads", "2", "--yes"
    )
    assert approved["segment_ids"] == segments.split(",")

    status = served.ok("requester", "status", request_id, *as_police, here=True)
    assert (status["status"], status["release_ids"]) == ("approved", [approved["release_id"]])

    out = served.home / "release"
    fetched = served.ok("requester", "fetch", approved["release_id"], "--out", str(out))
    assert fetched["ok"] is True
    assert fetched["device_id"] == served.uri.device_id
    assert [s["segment_id"] for s in fetched["segments"]] == segments.split(",")
    assert json.loads((out / "report.json").read_text())["ok"] is True
    assert "VERIFIED" in (out / "report.txt").read_text()
    with av.open(fetched["video"]) as container:
        assert sum(1 for _ in container.decode(video=0)) > 0
    offline = served.ok(
        "requester",
        "verify",
        str(out / "release.tar"),
        "--out",
        str(out / "v"),
        *as_police,
        here=True,
    )
    assert offline["ok"] is True

    # `owner approve` audited the log before approving: this check reads only what came since.
    audit = served.ok("owner", "audit")
    assert audit["verified"] is True
    assert first["size"] <= audit["previous_size"] == audit["first_index"]
    kinds = [e["kind"] for e in audit["entries"]]
    for kind in ("release.created", "release.downloaded"):
        assert kind in kinds

    _owner_housekeeping(served, as_owner, as_police, ask, request_id, approved["release_id"])

    # The log grew since: the next check needs a consistency proof from the stored checkpoint.
    later = served.ok("audit", "verify", *as_owner, here=True)
    assert (later["verified"], later["previous_size"]) == (True, audit["size"])
    assert later["size"] > audit["size"]
    # Only the entries appended since were read, and this owner is the cosigner of the log.
    assert later["first_index"] == audit["size"]
    assert [e["index"] for e in later["entries"]] == list(range(audit["size"], later["size"]))
    assert [(c["size"], c["key_id"]) for c in later["cosigners"]] == [
        (later["size"], c["key_id"]) for c in audit["cosigners"]
    ]

    # A profile whose pin does not match the device's TLS key refuses before any request.
    devices = json.loads((owner_dir / "devices.json").read_text())
    devices["devices"][0]["fingerprint"] = "A" * 43
    (owner_dir / "devices.json").write_text(json.dumps(devices))
    mismatch = served.cli("owner", "clips")
    assert (mismatch.returncode, mismatch.stdout) == (1, "")
    assert _error_line(mismatch) == (
        f"doorward: error: device {served.uri.device_id} at {served.url} presented a TLS key "
        "other than the pinned one: refusing to talk to it (if the device was reset, pair again)\n"
    )


def _error_line(run: subprocess.CompletedProcess[str]) -> str:
    """The error line ``doorward`` ends with; anything before it is a log line (WARNING)."""
    *logs, last = run.stderr.splitlines(keepends=True)
    assert all(" WARNING " in line or " ERROR " in line for line in logs), logs
    return last


def _pairing_failures(served: Served) -> int:
    failures: int = json.loads((served.data_dir / "pairing-state.json").read_text())["failures"]
    return failures


def _owner_housekeeping(
    served: Served,
    as_owner: tuple[str, str],
    as_police: tuple[str, str],
    ask: list[str],
    request_id: str,
    release_id: str,
) -> None:
    """The owner's other commands, run in this process against the same device."""
    [me] = served.ok("owner", "owners", *as_owner, here=True)["owners"]
    assert (me["name"], me["admin"]) == ("Ada's laptop", True)

    policy = served.ok("owner", "policy", *as_owner, here=True)["policy"]
    assert "federal_agency" in policy["refused_kinds"]
    stricter = {**policy, "refused_kinds": [*policy["refused_kinds"], "insurer"]}
    path = served.home / "policy.json"
    path.write_text(json.dumps(stricter))
    installed = served.ok("owner", "policy", "set", str(path), *as_owner, here=True)["policy"]
    assert "insurer" in installed["refused_kinds"]

    # A downloaded release can no longer be withdrawn; the device says so in one line.
    late = served.inline("owner", "revoke", release_id, *as_owner)
    assert (late.returncode, late.stdout) == (1, "")
    assert late.stderr.startswith(
        f"doorward: error: release {release_id} was already downloaded 1 time(s); "
        "a release cannot be unsent ("
    )
    assert late.stderr.count("\n") == 1

    # The first request was decided already.
    done = served.inline("owner", "approve", request_id, "--all", "--yes", *as_owner)
    assert (done.returncode, done.stderr) == (
        1,
        f"doorward: error: request {request_id} is approved, not pending\n",
    )

    again = served.ok("requester", "ask", *ask, *as_police, here=True)
    bogus = served.inline(
        "owner", "approve", again["request_id"], "--segments", "nope", "--yes", *as_owner
    )
    assert bogus.returncode == 1
    assert bogus.stderr.startswith(
        "doorward: error: segment(s) nope are not in the request's window; choose from: "
    )
    declined = served.ok(
        "owner", "decline", again["request_id"], "--reason", "no parcel here", *as_owner, here=True
    )
    assert (declined["status"], declined["reason"]) == ("declined", "no parcel here")
    status = served.ok("requester", "status", again["request_id"], *as_police, here=True)
    assert (status["status"], status["reason"]) == ("declined", "no parcel here")

    exported = served.home / "owner.age.key"
    result = served.ok("owner", "export-identity", "--out", str(exported), *as_owner, here=True)
    assert result["identity"] == str(exported)
    assert exported.stat().st_mode & 0o777 == 0o600
    assert exported.read_bytes() == (Path(as_owner[1]) / "age.key").read_bytes()
