"""``doorward demo``: the Doorward story, run for real on this machine and narrated for a person.

The doorbell (simulated camera → motion → libx264 → MPEG-TS segments → age → SQLite clip store), the
owner's phone, a local police department and a federal agency all run here, in one process, with the
real components: real age files, real signatures, a real audit log. Every artefact is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import secrets
import sys
import tarfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import av

from consent import owner as phone
from consent.audit import AuditLog, audit_origin
from consent.audit_verify import AuditVerifier
from consent.bundle import bundle_root
from consent.clips import StoreFootage
from consent.device import ConsentDesk
from consent.errors import PolicyRefused
from consent.models import PairedOwner, RequesterIdentity
from consent.requester import open_bundle
from consent.requests import sign_request
from crypto import age
from crypto.errors import NoIdentityMatched
from crypto.keys import DeviceIdentity, KeyBundle
from device import (
    CameraPipeline,
    ClipFinished,
    ClipStarted,
    ClipStore,
    DoorbellPressed,
    RecorderConfig,
)
from device.harness import detector_for
from hardware import SimulatedCamera, parse_scenario

__all__ = ["add_parser", "run_demo"]

_CAMERA = "front-door"
# A visitor walks up, rings, waits and leaves; the camera starts a minute ago so the clip is recent.
_SCENE = """\
description = "A visitor walks up to the door, rings the bell, waits and walks away."

[camera]
width = 640
height = 360
fps = 15
seconds = 30
seed = 7
start = {start}

[[actor]]
id = "visitor"
kind = "person"
enter_s = 7
leave_s = 24
path = [[-0.1, 0.92], [0.66, 0.86], [0.66, 0.86], [-0.1, 0.92]]
times = [7, 12, 17, 24]

[[press]]
at_s = 13
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo",
        help="run the whole story on a simulated doorbell and keep every artefact",
        description="Run the Doorward story end to end and leave every artefact in DIR.",
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to keep the artefacts (default: a new folder)"
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    directory = args.dir or Path.cwd() / datetime.now(UTC).strftime("doorward-demo-%Y%m%d-%H%M%S")
    summary = run_demo(directory, out=sys.stdout)
    return 0 if summary["verified"] else 1


@dataclass
class _Narrator:
    out: TextIO
    started: float
    number: int = 0

    def step(self, title: str) -> None:
        self.number += 1
        self.out.write(f"\n[{self.number}] {title}\n")
        self.out.flush()

    def say(self, text: str) -> None:
        self.out.write(f"    {text}\n")
        self.out.flush()


def run_demo(directory: Path, *, out: TextIO) -> dict[str, Any]:
    """Run the story, write ``directory/summary.json`` and return the summary."""
    return asyncio.run(_Demo(Path(directory), out).run())


class _Demo:
    def __init__(self, directory: Path, out: TextIO) -> None:
        self.dir = directory
        self.data = directory / "device" / "data"
        self.n = _Narrator(out, time.monotonic())

    async def run(self) -> dict[str, Any]:
        n = self.n
        self.dir.mkdir(parents=True, exist_ok=True)
        n.out.write(f"Doorward demo — every artefact is kept in {self.dir}\n")

        n.step("The doorbell starts for the first time and makes its identity")
        device = DeviceIdentity.load_or_create(self.data / "keys" / "device.ed25519")
        n.say(f"device id {device.device_id}; its key signs manifests and the audit log")

        n.step("The owner's phone makes its keys and pairs with the doorbell")
        owner = KeyBundle.generate("hybrid")
        owner.save(self.dir / "owner")
        paired = [PairedOwner.from_public(owner.signing_key.public_key())]
        n.say(f"owner key id {owner.key_id}")
        n.say(
            f"post-quantum age recipient {str(owner.recipient)[:28]}… (the doorbell keeps only this)"
        )
        store = ClipStore(self.data, device)
        audit = AuditLog(
            self.data / "doorward.db",
            signer=device.private_key,
            origin=audit_origin(device.public_key),
        )
        audit.append("owner.added", owner=owner.key_id, admin=True)
        desk = ConsentDesk(
            self.data / "doorward.db",
            device=device,
            clips=store,
            audit=audit,
            owners=lambda: paired,
        )
        try:
            return await self._story(device, owner, store, audit, desk)
        finally:
            audit.close()
            store.close()

    async def _story(
        self,
        device: DeviceIdentity,
        owner: KeyBundle,
        store: ClipStore,
        audit: AuditLog,
        desk: ConsentDesk,
    ) -> dict[str, Any]:
        n = self.n
        n.step("A visitor comes to the door; the doorbell records with pre-roll")
        await self._record(store, owner)
        [clip] = store.list_clips(camera=_CAMERA)
        segments = store.list_segments(clip.clip_id)
        n.say(
            f"clip {clip.clip_id}: {len(segments)} segments, "
            f"{clip.end_s - clip.start_s:.1f} s, {sum(s.size for s in segments)} bytes"
        )
        n.say(f"each segment is an age file to the owner: {segments[0].path.name} …")
        leaks = _plaintext_video_files(self.data)
        n.say(f"files under the data directory holding plaintext MPEG-TS: {len(leaks)}")

        now = int(time.time())
        n.step("A local police department asks for footage of the visit")
        police = KeyBundle.generate("x25519")
        police.save(self.dir / "requester")
        police_who = RequesterIdentity(
            name="Det. R. Alvarez",
            organisation="Springfield Police Department",
            kind="local_agency",
            jurisdiction="Springfield",
            contact="records@springfield.example",
        )
        token = self._ask(
            police,
            police_who,
            clip,
            now,
            "package_theft",
            "SPD-2026-1142",
            "a parcel was taken from a porch on this street",
            "voluntary",
        )
        record = desk.submit_request(token, now)
        n.say(f"request {record.request_id}: {record.status.value} — the owner's phone is asked")

        n.step("A federal agency asks too; the owner's default policy refuses it at once")
        federal = KeyBundle.generate("x25519")
        federal_who = RequesterIdentity(
            name="Agent K. Lee",
            organisation="Federal Agency",
            kind="federal_agency",
            jurisdiction="US",
            contact="duty@federal.example",
        )
        token = self._ask(
            federal,
            federal_who,
            clip,
            now,
            "other",
            "",
            "checking residents of this street",
            "voluntary",
        )
        try:
            desk.submit_request(token, now)
            refused = ""
        except PolicyRefused as exc:
            refused = exc.rule or ""
            n.say(f"refused by rule '{exc.rule}': {exc}")

        n.step("The owner reviews the request and approves only the segments with the visitor")
        footage = StoreFootage(store)
        [pending] = phone.list_pending(desk.pending_requests(now), footage, now)
        [(_, in_window)] = pending.clips
        chosen = list(
            in_window[len(in_window) // 3 : len(in_window) // 3 + max(1, len(in_window) // 2)]
        )
        n.say(
            f"{len(in_window)} segments in the window; approving {len(chosen)}: "
            + ", ".join(str(s.index) for s in chosen)
        )
        approval = phone.approve(
            owner.signing_key,
            [owner.age_identity],
            pending.request,
            chosen,
            footage,
            device_id=device.device_id,
            token_id=secrets.token_hex(8),
            now=now,
            expires_at_s=now + 7 * 86400,
            max_downloads=2,
        )
        release = desk.record_approval(
            pending.request.request_id, approval.token, approval.manifest, now
        )
        n.say(
            f"consent token signed on the phone; release {release.release_id} recorded, "
            "re-headed to the requester's key only (releases cannot be unsent)"
        )
        n.say("nothing about the owner (name, address, email) is disclosed: none was ticked")

        n.step("The police department fetches the release, verifies and decrypts it")
        desk.authorize_download(release.release_id, police.key_id, now)
        bundle = self.dir / "release.tar"
        with bundle.open("wb") as f:
            desk.write_bundle(release.release_id, f)
        report = open_bundle(
            bundle,
            [police.age_identity],
            self.dir / "requester" / "release",
            requester_key_id=police.key_id,
        )
        for check in report.checks:
            n.say(f"checked: {check}")
        video = Path(report.video) if report.video else None
        frames = _count_frames(video) if video else 0
        n.say(f"decrypted {len(report.segments)} segments into {video} ({frames} frames decode)")
        released = self._extract_segments(bundle, release.release_id)
        opens = _owner_opens(owner, released[0])
        n.say(
            f"`age -d -i {self.dir / 'requester' / 'age.key'} {released[0]}` works with the "
            f"`age` tool too; the owner's key opens that copy: {opens}"
        )

        n.step("The owner verifies the doorbell's audit log")
        verifier = AuditVerifier(
            device.public_key, audit.origin, state_path=self.dir / "owner" / "audit.checkpoint"
        )
        checkpoint = audit.checkpoint()
        verifier.verify_entries(audit.entries(), checkpoint)
        kinds = [entry.body()["kind"] for entry in audit.entries()]
        n.say(f"{len(kinds)} entries, signed checkpoint verified and stored: " + ", ".join(kinds))
        (self.dir / "owner" / "checkpoint.txt").write_text(checkpoint)

        verified = report.ok and frames > 0 and not leaks and not opens and bool(refused)
        summary: dict[str, Any] = {
            "data_dir": str(self.data),
            "device_id": device.device_id,
            "owner_identity": str(self.dir / "owner" / "age.key"),
            "requester_identity": str(self.dir / "requester" / "age.key"),
            "clip": clip.clip_id,
            "segments_recorded": len(segments),
            "bundle": str(bundle),
            "released_segments": [str(p) for p in released],
            "video": str(video) if video else None,
            "video_frames": frames,
            "report": str(self.dir / "requester" / "release" / "report.json"),
            "checkpoint": str(self.dir / "owner" / "checkpoint.txt"),
            "federal_request_refused_by": refused,
            "audit_entries": kinds,
            "plaintext_files_on_device": [str(p) for p in leaks],
            "owner_opens_release": opens,
            "verified": verified,
            "elapsed_s": round(time.monotonic() - self.n.started, 2),
        }
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        result = "every check passed" if verified else "SOME CHECKS FAILED"
        n.out.write(
            f"\nDone in {summary['elapsed_s']} s: {result}. Summary: {self.dir / 'summary.json'}\n"
        )
        return summary

    async def _record(self, store: ClipStore, owner: KeyBundle) -> None:
        start = (datetime.now(UTC) - timedelta(seconds=60)).replace(microsecond=0)
        scenario = parse_scenario(
            _SCENE.format(start=start.isoformat().replace("+00:00", "Z")), "demo-visit.toml"
        )
        camera = SimulatedCamera(scenario, realtime=False, name=_CAMERA)
        recipient = owner.recipient
        pipeline = CameraPipeline(
            _CAMERA,
            camera,
            store,
            lambda: [recipient],
            detector=detector_for(scenario),
            config=RecorderConfig(),
            on_event=self._on_event,
            button=camera.button,
        )
        try:
            await pipeline.run()
        finally:
            await camera.close()

    def _on_event(self, event: object) -> None:
        if isinstance(event, ClipStarted):
            self.n.say(f"motion → clip.started {event.clip_id}")
        elif isinstance(event, DoorbellPressed):
            self.n.say("doorbell.pressed")
        elif isinstance(event, ClipFinished):
            self.n.say(f"clip.finished after post-roll ({event.segments} segments)")

    def _ask(
        self,
        who: KeyBundle,
        identity: RequesterIdentity,
        clip: Any,
        now: int,
        category: str,
        case: str,
        reason: str,
        basis: str,
    ) -> str:
        return sign_request(
            who.signing_key,
            str(who.recipient),
            identity,
            camera=_CAMERA,
            window_start_s=int(clip.start_s) - 60,
            window_end_s=min(now, int(clip.end_s) + 60),
            category=category,
            case_reference=case,
            reason=reason,
            legal_basis=basis,
            issued_at_s=now,
            expires_at_s=now + 3 * 86400,
            nonce=secrets.token_hex(12),
        )

    def _extract_segments(self, bundle: Path, release_id: str) -> list[Path]:
        target = self.dir / "requester" / "segments"
        target.mkdir(parents=True, exist_ok=True)
        prefix = f"{bundle_root(release_id)}/segments/"
        paths = []
        with tarfile.open(bundle) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.startswith(prefix):
                    source = tar.extractfile(member)
                    assert source is not None
                    path = target / Path(member.name).name
                    path.write_bytes(source.read())
                    paths.append(path)
        return sorted(paths)


def _owner_opens(owner: KeyBundle, released: Path) -> bool:
    try:
        age.decrypt(owner_identities := [owner.age_identity], released.read_bytes(), io.BytesIO())
    except NoIdentityMatched:
        return False
    return bool(owner_identities)


def _count_frames(video: Path) -> int:
    with av.open(str(video)) as container:
        return sum(1 for _ in container.decode(video=0))


def _plaintext_video_files(root: Path) -> list[Path]:
    """Files holding a run of MPEG-TS packets (sync byte 0x47 every 188 bytes)."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and _looks_like_ts(path.read_bytes()):
            found.append(path)
    return found


def _looks_like_ts(data: bytes, run: int = 5) -> bool:
    for offset in range(min(len(data), 188)):
        end = offset + 188 * (run - 1)
        if end < len(data) and all(data[offset + 188 * k] == 0x47 for k in range(run)):
            return True
    return False
