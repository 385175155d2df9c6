"""``doorward owner backup …``: the device's off-site backup, read with the owner's read-only keys.

    configure   remember the endpoint, bucket and credentials file for the paired device
    list        the clips of the uploaded manifests
    verify      check every object (exit 1 and each failing object named if one fails)
    restore     verify, then decrypt and join each clip into DIR/<clip-id>.ts

The bucket flags (``--endpoint``, ``--bucket``, ``--credentials``, ``--region``) override what
``configure`` saved in the profile's ``backup.json``; without a credentials file the keys come from
``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``. Only the file's path is saved, never a key.
Nothing here talks to the doorbell: it may be gone.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from hub.cli.common import CliError, add_common, command_handler, emit, iso, open_profile

__all__ = ["add_commands"]

T = TypeVar("T")


def add_commands(commands: Any) -> None:
    """Add the ``backup`` group to the ``owner`` group's ``commands``."""
    group: argparse.ArgumentParser = commands.add_parser(
        "backup", help="list, verify and restore the device's off-site backup"
    )
    sub = group.add_subparsers(dest="backup_command", metavar="COMMAND", required=True)

    def leaf(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        add_common(parser, "owner")
        parser.add_argument("--device", metavar="ID", help="device id (when several are paired)")
        parser.add_argument("--endpoint", metavar="URL", help="the S3 API's URL")
        parser.add_argument("--bucket", metavar="s3://BUCKET/PREFIX", help="where the backup is")
        parser.add_argument(
            "--credentials",
            type=Path,
            metavar="FILE",
            help="AWS-style credentials file (0600) with the owner's read keys; "
            "else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
        )
        parser.add_argument("--region", metavar="NAME", help="SigV4 region (us-east-1)")
        parser.set_defaults(handler=command_handler(handler))
        return parser

    leaf("configure", _configure, "remember the bucket and credentials file in the profile")
    leaf("list", _list, "list the clips in the backup")
    p = leaf("verify", _verify, "check every object in the backup")
    p.add_argument("--clip", action="append", metavar="ID", help="only this clip's segments")
    p = leaf("restore", _restore, "verify, decrypt and join each clip into DIR")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--clip", action="append", metavar="ID", help="only this clip (repeatable)")


# -- commands -----------------------------------------------------------------------------------


def _configure(args: argparse.Namespace) -> int:
    from hub.client.backup import save_settings

    session = _Session(args)
    settings = session.settings
    settings.credentials()  # a missing, unreadable or world-readable file fails now, not later
    path = save_settings(session.profile.directory, session.device.device_id, settings)
    creds = str(settings.credentials_file) if settings.credentials_file else "the AWS_* environment"
    return emit(
        args,
        {"device_id": session.device.device_id, **settings.to_json(), "saved": str(path)},
        [
            f"backup of device {session.device.device_id}: {settings.address()}",
            f"read keys from {creds}; saved in {path}",
        ],
    )


def _list(args: argparse.Namespace) -> int:
    session = _Session(args)
    clips, problems = session.run(lambda reader: reader.list_clips())
    rows = [c.to_json() for c in clips]
    lines = [
        f"{c.clip_id}  {c.manifest.camera}  {iso(c.manifest.start_ms / 1000)} → "
        f"{iso(None if c.manifest.end_ms is None else c.manifest.end_ms / 1000)}  "
        f"{len(c.manifest.segments)} segments  {c.bytes} bytes"
        f"{'' if c.manifest.end_ms is not None else '  (unfinished)'}"
        for c in clips
    ] or ["no clips in the backup"]
    lines += [f"FAILED {p}" for p in problems]
    emit(args, {"clips": rows, "problems": [_problem(p) for p in problems]}, lines)
    return 1 if problems else 0


def _verify(args: argparse.Namespace) -> int:
    session = _Session(args)
    report = session.run(lambda reader: reader.verify(args.clip))
    return _report(args, report, restoring=False)


def _restore(args: argparse.Namespace) -> int:
    session = _Session(args)
    out: Path = args.out
    report = session.run(lambda reader: reader.restore(out, args.clip))
    return _report(args, report, restoring=True)


# -- plumbing -----------------------------------------------------------------------------------


class _Session:
    """The profile, paired device, keys and backup settings of one command."""

    def __init__(self, args: argparse.Namespace) -> None:
        from hub.client.backup import BackupSettings, load_settings

        self.profile = open_profile(args)
        self.keys = self.profile.keys()
        self.device = self.profile.device(args.device)
        if self.device.signing_key is None:
            raise CliError(
                f"device {self.device.device_id} was pinned without its signing key; pair with "
                "it again so that its manifests and checkpoints can be checked"
            )
        saved = load_settings(self.profile.directory, self.device.device_id)
        endpoint = args.endpoint or (saved.endpoint if saved else None)
        bucket = args.bucket or (saved.bucket_url if saved else None)
        if not endpoint or not bucket:
            raise CliError(
                "no backup is configured for this device: give --endpoint URL and --bucket "
                "s3://BUCKET/PREFIX, or save them with 'doorward owner backup configure'"
            )
        credentials = args.credentials
        if credentials is None and saved is not None:
            credentials = saved.credentials_file
        self.settings = BackupSettings(
            endpoint,
            bucket,
            args.region or (saved.region if saved else "us-east-1"),
            None if credentials is None else Path(credentials).expanduser().resolve(),
        )
        self.address = self.settings.address()

    def held_checkpoint(self) -> str | None:
        """The audit checkpoint this profile accepted last, if it ever audited."""
        path = self.profile.checkpoint_path(self.device.device_id)
        return path.read_text(encoding="utf-8") if path.exists() else None

    def run(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``call(reader)`` on a reader of the bucket."""
        from hub.client.backup import BackupReader
        from hub.offsite.s3 import ObjectStore

        credentials = self.settings.credentials()
        assert self.device.signing_key is not None
        device_key = self.device.signing_key

        async def go() -> T:
            async with ObjectStore(self.address, credentials) as store:
                reader = BackupReader(
                    store,
                    device_id=self.device.device_id,
                    device_key=device_key,
                    identities=[self.keys.age_identity],
                    held_checkpoint=self.held_checkpoint(),
                )
                return await call(reader)

        return asyncio.run(go())


def _report(args: argparse.Namespace, report: Any, *, restoring: bool) -> int:
    log = report.log
    segments = sum(len(c.manifest.segments) for c in report.clips)
    states: dict[str, int] = {}
    for clip in report.clips:
        states[clip.seal] = states.get(clip.seal, 0) + 1
    lines = []
    if log.ckpt_name is not None:
        held = f" (this profile held {log.held_size})" if log.held_size is not None else ""
        verdict = "verified" if log.verified else "NOT verified"
        lines.append(f"{log.ckpt_name}: audit log of {log.size} entries {verdict}{held}")
    summary = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "none"
    lines.append(
        f"{len(report.clips)} clips ({summary}); {segments} segments, "
        f"{report.bytes_read} bytes read from {report.objects} objects"
    )
    for clip_id, path in report.restored.items():
        lines.append(f"restored {clip_id} → {path}")
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"FAILED {p}" for p in report.problems]
    if report.problems:
        lines.append(
            f"{len(report.problems)} problems: "
            + ("clips that failed were not written" if restoring else "the backup did not verify")
        )
    else:
        lines.append("every object verified")
    result = {
        "ok": report.ok,
        "checkpoint": log.ckpt_name,
        "log_size": log.size,
        "log_verified": log.verified,
        "held_size": log.held_size,
        "clips": [c.to_json() for c in report.clips],
        "restored": {k: str(v) for k, v in report.restored.items()},
        "problems": [_problem(p) for p in report.problems],
        "notes": list(report.notes),
        "bytes_read": report.bytes_read,
    }
    emit(args, result, lines)
    return 0 if report.ok else 1


def _problem(problem: Any) -> dict[str, str]:
    return {"object": problem.name, "problem": problem.what}
