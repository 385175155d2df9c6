"""``doorward demo``: the Doorward story on loopback, with real processes and real TLS, narrated.

The demo starts ``doorward serve`` (a simulated camera running in real time) as its own process, then
plays the people in the story with the ``doorward`` command line, each command its own process:
the owner's phone pairs, a scripted visitor is recorded, a local police department asks for footage,
a federal agency's request is refused by the default policy, the owner approves part of the clip,
the police department fetches, verifies and decrypts it, and the owner verifies the audit log.
Every artefact stays in the demo's folder.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from crypto import age
from crypto.errors import DoorwardError, NoIdentityMatched
from crypto.setup_code import PairingURI

__all__ = ["DemoFailed", "add_parser", "run_demo"]

_CAMERA = "front-door"
_TIMEOUT_S = 90  # the whole recording must be done by then
# A visitor walks up, rings, waits and leaves, a few seconds after the owner has paired.
_SCENE = """\
description = "A visitor walks up to the door, rings the bell, waits and walks away."

[camera]
width = 640
height = 360
fps = 15
seconds = 34
seed = 7

[[actor]]
id = "visitor"
kind = "person"
enter_s = 13
leave_s = 25
path = [[-0.1, 0.92], [0.66, 0.86], [0.66, 0.86], [-0.1, 0.92]]
times = [13, 17, 21, 25]

[[press]]
at_s = 18
"""


class DemoFailed(DoorwardError):
    """A step of the demo did not do what the story needs; the message names the step."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand (``--dir DIR``) to the ``doorward`` subparsers."""
    parser = commands.add_parser(
        "demo",
        help="run the whole story on a simulated doorbell and keep every artefact",
        description="Run the Doorward story on loopback and leave every artefact in DIR.",
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to keep the artefacts (default: a new folder)"
    )
    parser.add_argument(
        "--backup",
        action="store_true",
        help=(
            "back up to an S3 bucket (SeaweedFS on loopback) while recording, then play the "
            "stolen doorbell: its data folder is deleted and the owner restores and verifies "
            "every clip from the bucket (pip install 'doorward[offsite-demo]')"
        ),
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    directory = args.dir or Path.cwd() / datetime.now(UTC).strftime("doorward-demo-%Y%m%d-%H%M%S")
    summary = run_demo(directory, out=sys.stdout, backup=args.backup)
    return 0 if summary["verified"] else 1


def run_demo(directory: Path, *, out: TextIO, backup: bool = False) -> dict[str, Any]:
    """Run the story, write ``directory/summary.json`` and return the summary; with ``backup``,
    also the off-site backup and the stolen doorbell's restore."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    story = _Story(directory, out, backup=backup)
    try:
        return story.run()
    finally:
        story.stop_device()
        story.stop_bucket()


class _Story:
    def __init__(self, directory: Path, out: TextIO, *, backup: bool = False) -> None:
        self.dir = directory
        self.out = out
        self.backup = backup
        self.bucket: Any = None  # hub.offsite.seaweed.SeaweedServer with --backup
        self.started = time.monotonic()
        self.step_number = 0
        self.device: subprocess.Popen[str] | None = None
        self.device_lines: queue.Queue[str | None] = queue.Queue()
        # Every process of the story runs the same code as this one, whatever the working folder.
        code_root = str(Path(__file__).resolve().parent.parent)
        search = [code_root, *filter(None, [os.environ.get("PYTHONPATH")])]
        self.env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(directory / "config"),
            "PYTHONPATH": os.pathsep.join(search),
        }

    # -- narration ---------------------------------------------------------------------------

    def step(self, title: str) -> None:
        self.step_number += 1
        self.out.write(f"\n[{self.step_number}] {title}\n")
        self.out.flush()

    def say(self, text: str) -> None:
        self.out.write(f"    {text}\n")
        self.out.flush()

    # -- the story ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.out.write(f"Doorward demo — every artefact is kept in {self.dir}\n")
        doctor = self.check_device()
        if self.backup:
            self.start_bucket()
        self.step(
            "The doorbell starts: `doorward serve` with a simulated camera, HTTPS on loopback"
        )
        url, uri = self.start_device()
        self.say(f"serving {url}; device id {uri.device_id}")
        self.say(f"TLS key fingerprint {uri.fingerprint} (phones pin it)")
        self.say("first start: it printed a setup code and its QR code (kept in device.log)")

        self.step("The owner's phone makes its keys and pairs with the setup code (SPAKE2)")
        owner = self.dir / "owner"
        made = self.cli("owner", "init", "--name", "Sam's phone", profile=owner)
        self.say(
            f"owner key id {made['key_id']}; post-quantum age recipient {made['recipient'][:24]}…"
        )
        paired = self.cli("owner", "pair", "-", profile=owner, stdin=uri.to_uri() + "\n")
        self.say(f"paired with {paired['device_id']}; its TLS key is pinned from now on")
        self.say("the doorbell keeps only the owner's public keys: it cannot read what it records")

        self.step("A visitor comes to the door and rings; the doorbell records with pre-roll")
        clip = self.wait_for_clip(owner)
        self.say(
            f"clip {clip['clip_id']}: {clip['segments']} segments, {clip['bytes']} bytes, "
            f"{clip['end'] - clip['start']:.1f} s, each segment an age file to the owner"
        )
        data = self.dir / "doorbell"
        scanned = [p for p in sorted(data.rglob("*")) if p.is_file()]
        if not any(p.name.endswith(".ts.age") for p in scanned):
            raise DemoFailed(f"no encrypted segment found under {data}")
        leaks = [p for p in scanned if _looks_like_ts(p.read_bytes())]
        self.say(
            f"scanned {len(scanned)} files on the doorbell (database, keys, segments): "
            f"{len(leaks)} hold plaintext video"
        )

        self.step("A local police department asks for footage of the visit")
        police = self.dir / "requester"
        self.cli(
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
            profile=police,
        )
        asked = self.ask(
            police,
            url,
            uri,
            clip,
            "package_theft",
            "SPD-2026-1142",
            "a parcel was taken from a porch on this street",
        )
        self.say(f"request {asked['request_id']}: {asked['status']} — the owner's phone is asked")

        self.step("A federal agency asks too; the owner's default policy refuses it at once")
        federal = self.dir / "federal"
        self.cli(
            "requester",
            "init",
            "--name",
            "Agent K. Lee",
            "--organisation",
            "Federal Agency",
            "--kind",
            "federal_agency",
            profile=federal,
        )
        refused = self.ask(
            federal,
            url,
            uri,
            clip,
            "other",
            "FA-77",
            "checking residents of this street",
            expect_refusal=True,
        )
        self.say(f"refused: {refused}")

        self.step("The owner reviews the request and approves only the segments with the visitor")
        pending = self.cli("owner", "requests", "--pending", profile=owner)["requests"]
        [request] = [r for r in pending if r["request_id"] == asked["request_id"]]
        self.say(
            f"{request['organisation']} ({request['kind']}), {request['category']}, "
            f'case {request["case_reference"]}: "{request["request_reason"]}"'
        )
        ids = [f"{clip['clip_id']}.{i:06d}" for i in range(clip["segments"])]
        chosen = ids[len(ids) // 3 : len(ids) // 3 + max(1, len(ids) // 2)]
        release = self.cli(
            "owner",
            "approve",
            request["request_id"],
            "--segments",
            ",".join(chosen),
            "--max-downloads",
            "2",
            "--yes",
            profile=owner,
        )
        self.say(
            f"approved {len(release['segment_ids'])} of {len(ids)} segments; re-headed on "
            f"the phone to the requester's key only; release {release['release_id']}"
        )
        self.say("nothing about the owner (name, address, email) goes with it: none was ticked")

        self.step("The police department fetches the release, verifies and decrypts it")
        fetched = self.cli(
            "requester",
            "fetch",
            release["release_id"],
            "--out",
            str(self.dir / "release"),
            profile=police,
        )
        for check in fetched["checks"]:
            self.say(f"checked: {check}")
        released = [Path(s["age_file"]) for s in fetched["segments"]]
        self.say(f"video: {fetched['video']}")
        opens = _owner_opens(owner / "age.key", released[0])
        self.say(
            f"each segment also opens with `age -d -i {police / 'age.key'} …`; the owner's "
            f"key opens the released copy: {opens}"
        )

        self.step("The owner verifies the doorbell's audit log")
        audit = self.cli("owner", "audit", profile=owner)
        kinds = [entry["kind"] for entry in audit["entries"]]
        self.say(
            f"{audit['size']} entries in a signed Merkle tree, checkpoint verified and kept "
            f"in {audit['checkpoint']}"
        )
        self.say("entries: " + ", ".join(kinds))

        if self.backup:
            self.wait_for_backup(owner, audit["size"])
        self.step("The doorbell shuts down cleanly")
        status = self.stop_device()
        self.say(f"`doorward serve` exited with status {status}")
        restored = self.restore_after_theft(owner, clip) if self.backup else None

        verified = (
            fetched["ok"]
            and not leaks
            and not opens
            and status == 0
            and "release.downloaded" in kinds
            # Sent by the doorbell, or (with a bucket) fetched through a presigned URL
            and ("release.sent" in kinds or "release.presigned" in kinds)
            and bool(refused)
            and doctor["ok"]
            and (restored is None or restored["ok"])
        )
        summary: dict[str, Any] = {
            "data_dir": str(data),
            "device_id": uri.device_id,
            "url": url,
            "owner_identity": str(owner / "age.key"),
            "requester_identity": str(police / "age.key"),
            "clip": clip["clip_id"],
            "segments_recorded": clip["segments"],
            "bundle": fetched["bundle"],
            "released_segments": [str(p) for p in released],
            "video": fetched["video"],
            "report": fetched["report_json"],
            "checkpoint": audit["checkpoint"],
            "federal_request_refused": refused,
            "doctor": [check["check"] for check in doctor["checks"]],
            "audit_entries": kinds,
            "plaintext_files_on_device": [str(p) for p in leaks],
            "owner_opens_release": opens,
            "verified": verified,
            "elapsed_s": round(time.monotonic() - self.started, 1),
        }
        if restored is not None:
            summary["backup"] = restored
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        result = "every check passed" if verified else "SOME CHECKS FAILED"
        self.out.write(
            f"\nDone in {summary['elapsed_s']} s: {result}. Summary: {self.dir / 'summary.json'}\n"
        )
        return summary

    # -- the off-site backup -----------------------------------------------------------------

    def start_bucket(self) -> None:
        """SeaweedFS on loopback with three identities: the doorbell (write only, under its
        prefix), the owner (read only) and an administrator who made the bucket."""
        from hub.offsite.seaweed import SeaweedServer, StorageIdentities, write_credentials_file
        from hub.offsite.target import OffsiteError

        self.step("An S3 bucket off the doorbell (SeaweedFS on loopback) will keep its evidence")
        self.bucket = SeaweedServer(
            self.dir / "bucket-server", StorageIdentities.generate("evidence", "front-door")
        )
        try:
            self.bucket.start()
        except OffsiteError as exc:
            raise DemoFailed(f"the S3 server did not start: {exc}") from None
        ids = self.bucket.identities
        write_credentials_file(self.dir / "doorbell-s3-credentials", ids.device)
        write_credentials_file(self.dir / "owner-s3-credentials", ids.owner)
        self.say(f"{self.bucket.endpoint}, bucket `evidence`, prefix `front-door`")
        self.say("the doorbell's keys may only write there: they can neither list nor read")

    def stop_bucket(self) -> None:
        bucket, self.bucket = self.bucket, None
        if bucket is not None:
            bucket.stop()

    def backup_flags(self) -> list[str]:
        if self.bucket is None:
            return []
        return [
            "--backup",
            "s3://evidence/front-door",
            "--backup-endpoint",
            self.bucket.endpoint,
            "--backup-credentials",
            str(self.dir / "doorbell-s3-credentials"),
        ]

    def wait_for_backup(self, owner: Path, audited: int) -> None:
        self.step("Meanwhile the doorbell uploaded everything it keeps to the bucket")
        deadline = time.monotonic() + 60
        while True:
            status = self.cli("owner", "status", profile=owner, quiet=True)["backup"]
            done = status["queued_objects"] == 0 and status["audit_entries_uploaded"] >= audited
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if not done:
            raise DemoFailed(f"the backup did not catch up within 60 s: {status}")
        self.say(
            f"{status['uploaded_objects']} objects, {status['uploaded_bytes']} bytes: segments "
            "(ciphertext), signed manifests, the audit log (encrypted to the owner), checkpoints"
        )
        self.say("names are hashes: the storage operator learns no camera name or clip time")

    def restore_after_theft(self, owner: Path, clip: dict[str, Any]) -> dict[str, Any]:
        data = self.dir / "doorbell"
        self.step("A thief takes the doorbell: its data folder is gone")
        shutil.rmtree(data)
        self.say(f"deleted {data}")
        self.step("The owner verifies and restores every clip from the bucket, read-only keys")
        assert self.bucket is not None
        self.cli(
            "owner",
            "backup",
            "configure",
            "--endpoint",
            self.bucket.endpoint,
            "--bucket",
            "s3://evidence/front-door",
            "--credentials",
            str(self.dir / "owner-s3-credentials"),
            profile=owner,
        )
        verified = self.cli("owner", "backup", "verify", profile=owner)
        self.say(
            f"checked {len(verified['clips'])} clips against their signed manifests, the log "
            f"({verified['log_size']} entries) against checkpoint {verified['checkpoint']} and "
            f"the one this phone holds: {'ok' if verified['ok'] else 'FAILED'}"
        )
        out = self.dir / "restored"
        restored = self.cli("owner", "backup", "restore", "--out", str(out), profile=owner)
        files = {clip_id: Path(path) for clip_id, path in restored["restored"].items()}
        seconds = {clip_id: _video_seconds(path) for clip_id, path in files.items()}
        for clip_id, path in files.items():
            self.say(f"{path.name}: {seconds[clip_id]:.1f} s of video, decrypted on the phone")
        ok = bool(verified["ok"] and restored["ok"] and clip["clip_id"] in files)
        return {
            "ok": ok,
            "restored": {clip_id: str(path) for clip_id, path in files.items()},
            "seconds": seconds,
            "checkpoint": verified["checkpoint"],
        }

    # -- the device process ------------------------------------------------------------------

    def check_device(self) -> dict[str, Any]:
        """``doorward doctor`` on the board before its first start, as an installer runs it."""
        self.step("Before the first start, `doorward doctor` checks the board")
        (self.dir / "visit.toml").write_text(_SCENE)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "hub.cli.main",
                "doctor",
                "--data",
                str(self.dir / "doorbell"),
                "--camera",
                f"{_CAMERA}=simulated:{self.dir / 'visit.toml'}",
                "--json",
            ],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.dir,
            timeout=120,
            check=False,
        )
        try:
            report: dict[str, Any] = json.loads(run.stdout)
        except json.JSONDecodeError:
            raise DemoFailed(f"`doorward doctor` failed: {run.stderr.strip()[-300:]}") from None
        for check in report["checks"]:
            self.say(f"{'ok' if check['ok'] else 'FAILED'}: {check['check']}: {check['detail']}")
        if not report["ok"] or run.returncode != 0:
            raise DemoFailed("`doorward doctor` found a problem with this machine (see above)")
        return report

    def start_device(self) -> tuple[str, PairingURI]:
        scene = self.dir / "visit.toml"
        scene.write_text(_SCENE)
        log = (self.dir / "device.log").open("w")
        self.device = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hub.cli.main",
                "serve",
                "--data",
                str(self.dir / "doorbell"),
                "--camera",
                f"{_CAMERA}=simulated:{scene}",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--name",
                "Front door (demo)",
                *self.backup_flags(),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=self.env,
            cwd=self.dir,
        )
        threading.Thread(target=self._pump, args=(self.device, log), daemon=True).start()
        uri_text = url = ""
        deadline = time.monotonic() + 30
        while not url:
            line = self._device_line(deadline)
            if line.strip().startswith("pairing URI:"):
                uri_text = line.split("pairing URI:", 1)[1].strip()
            elif line.startswith("doorward: serving "):
                url = line.split()[2]
        if not uri_text:
            raise DemoFailed("`doorward serve` printed no pairing URI; see device.log")
        return url, PairingURI.parse(uri_text)

    def _pump(self, process: subprocess.Popen[str], log: TextIO) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            log.flush()
            self.device_lines.put(line)
        self.device_lines.put(None)

    def _device_line(self, deadline: float) -> str:
        try:
            line = self.device_lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise DemoFailed("`doorward serve` did not start in 30 s; see device.log") from None
        if line is None:
            raise DemoFailed("`doorward serve` exited during start-up; see device.log")
        return line

    def stop_device(self) -> int | None:
        process, self.device = self.device, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    # -- the people, through the command line ------------------------------------------------

    def cli(
        self,
        group: str,
        *args: str,
        profile: Path,
        expect_error: bool = False,
        quiet: bool = False,
        stdin: str = "",
    ) -> Any:
        """Run ``doorward GROUP ARGS --profile PROFILE --json`` as its own process (``stdin``: what
        it reads, e.g. a setup URI kept out of the process list)."""
        shown = " ".join(["doorward", group, *args[:2]])
        if not quiet:
            self.say(f"$ {shown}{' …' if len(args) > 2 else ''}")
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "hub.cli.main",
                group,
                *args,
                "--profile",
                str(profile),
                "--json",
            ],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.dir,
            timeout=120,
            check=False,
        )
        if expect_error:
            if run.returncode == 0:
                raise DemoFailed(f"`{shown}` succeeded but the story expects a refusal")
            return run.stderr.strip().removeprefix("doorward: error: ")
        if run.returncode != 0:
            raise DemoFailed(f"`{shown}` failed: {run.stderr.strip()}")
        return json.loads(run.stdout.strip().splitlines()[-1])

    def ask(
        self,
        profile: Path,
        url: str,
        uri: PairingURI,
        clip: dict[str, Any],
        category: str,
        case: str,
        reason: str,
        *,
        expect_refusal: bool = False,
    ) -> Any:
        start = _iso(clip["start"] - 30)
        end = _iso(min(time.time() - 1, clip["end"] + 30))
        return self.cli(
            "requester",
            "ask",
            url,
            f"--fingerprint={uri.fingerprint}",  # a fingerprint may begin with "-"
            "--device-id",
            uri.device_id,
            "--camera",
            _CAMERA,
            "--start",
            start,
            "--end",
            end,
            "--category",
            category,
            "--case",
            case,
            "--reason",
            reason,
            "--legal-basis",
            "voluntary",
            profile=profile,
            expect_error=expect_refusal,
        )

    def wait_for_clip(self, owner: Path) -> dict[str, Any]:
        deadline = time.monotonic() + _TIMEOUT_S
        announced = False
        while time.monotonic() < deadline:
            clips = self.cli("owner", "clips", profile=owner, quiet=True)["clips"]
            if clips and not announced:
                self.say(f"motion → recording clip {clips[0]['clip_id']}")
                announced = True
            done = [c for c in clips if c["finished"] and c["segments"] >= 3]
            if done:
                self.say("$ doorward owner clips")
                return dict(done[0])
            time.sleep(2)
        raise DemoFailed(f"no finished clip after {_TIMEOUT_S} s; see device.log")


def _video_seconds(path: Path) -> float:
    """How long the video in ``path`` plays (its frames' last timestamp), read with PyAV."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        first = last = None
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            first = packet.pts if first is None else min(first, packet.pts)
            last = packet.pts if last is None else max(last, packet.pts)
        if first is None or last is None or stream.time_base is None:
            return 0.0
        return float((last - first) * stream.time_base)


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(int(epoch_s), UTC).isoformat().replace("+00:00", "Z")


def _owner_opens(identity_file: Path, released: Path) -> bool:
    identities = age.parse_identities(identity_file.read_text())
    try:
        age.decrypt_bytes(identities, released.read_bytes())
    except NoIdentityMatched:
        return False
    return True


def _looks_like_ts(data: bytes, run: int = 5) -> bool:
    """Whether ``data`` holds a run of MPEG-TS packets (sync byte 0x47 every 188 bytes)."""
    for offset in range(min(len(data), 188)):
        end = offset + 188 * (run - 1)
        if end < len(data) and all(data[offset + 188 * k] == 0x47 for k in range(run)):
            return True
    return False
