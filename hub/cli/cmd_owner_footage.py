"""``doorward owner`` footage: list clips, and view one (segments decrypted here, never on the device)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import IO, Any, cast

from hub.cli.common import (
    CliError,
    Command,
    OwnerSession,
    add_device_option,
    emit,
    iso,
    parse_time,
    run_async,
)
from hub.cli.owner_ops import clip_plaintext, remux_to_mp4
from hub.cli.progress import Progress, ProgressWriter

__all__ = ["add_commands"]


def add_commands(command: Command) -> None:
    """Add ``clips``, ``view`` to the ``owner`` group."""
    p = command("clips", _clips, "list recorded clips")
    add_device_option(p)
    p.add_argument("--camera")
    p.add_argument("--since", type=parse_time, metavar="TIME")
    p.add_argument("--until", type=parse_time, metavar="TIME")
    p.add_argument("--limit", type=int, default=50)

    p = command("view", _view, "download a clip, decrypt it here and join it into one video")
    add_device_option(p)
    p.add_argument("clip_id", metavar="CLIP_ID")
    p.add_argument("--out", type=Path, metavar="FILE", help="CLIP_ID.ts by default; .mp4 remuxes")


# -- clips --------------------------------------------------------------------------------------


def _clips(args: argparse.Namespace) -> int:
    s = OwnerSession(args)

    async def fetch() -> list[Any]:
        async with s.client() as api:
            page = await api.clips(
                camera=args.camera, start_s=args.since, end_s=args.until, limit=args.limit
            )
            return list(page.clips)

    clips = run_async(fetch(), where=s.where)
    rows = [
        {
            "clip_id": c.clip_id,
            "camera": c.camera,
            "start": c.start_s,
            "end": c.end_s,
            "segments": c.segment_count,
            "bytes": c.bytes,
            "finished": c.finished,
        }
        for c in clips
    ]
    lines = [
        f"{c.clip_id}  {c.camera}  {iso(c.start_s)} → {iso(c.end_s)}  {c.segment_count} segments"
        f"  {c.bytes} bytes{'' if c.finished else '  (recording)'}"
        for c in clips
    ] or ["no clips"]
    return emit(args, {"clips": rows}, lines)


def _view(args: argparse.Namespace) -> int:
    s = OwnerSession(args)
    out: Path = args.out or Path(f"{args.clip_id}.ts")
    identities = [s.keys.age_identity]

    progress = Progress(f"clip {args.clip_id}")

    def counted(buffer: IO[bytes]) -> IO[bytes]:
        return cast(IO[bytes], ProgressWriter(buffer, progress))

    async def fetch() -> tuple[int, bytes]:
        async with s.client() as api:
            clip = await api.clip(args.clip_id)
            progress.total = clip.bytes
            video = await clip_plaintext(api, clip, identities, wrap=counted)
            return len(clip.segments), video

    try:
        count, video = run_async(fetch(), where=s.where)
    finally:
        progress.close()
    if count == 0:
        raise CliError(f"clip {args.clip_id} has no segments yet")
    if out.suffix.lower() == ".mp4":
        remux_to_mp4(video, out)
    else:
        out.write_bytes(video)
    return emit(
        args,
        {"clip_id": args.clip_id, "segments": count, "video": str(out)},
        [f"clip {args.clip_id}: {count} segments decrypted here and written to {out}"],
    )
