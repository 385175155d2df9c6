"""``doorward owner reply NAME`` and ``doorward owner replies …``: quick replies, short messages
stored on the doorbell and played on its speaker when the owner cannot talk.

    reply NAME [--camera C]    play the stored reply NAME to whoever is at the door
    replies list               the stored replies
    replies add FILE --name N  store a WAV or Ogg Opus file (at most 3 MiB and 15 s) as N
    replies remove N           delete the reply N
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hub.cli.common import (
    CliError,
    Command,
    OwnerSession,
    add_common,
    add_device_option,
    command_handler,
    emit,
    iso,
    run_async,
)

__all__ = ["add_commands"]

MAX_FILE_BYTES = 3 * 1024 * 1024  # as the device's limit (hub.server.replies.MAX_REPLY_BYTES)
# A relayed call is one sealed MQTT message of at most 126 KiB (hub.relay.client), the signed
# head and the sealing included; larger uploads go on the LAN.
MAX_RELAYED_BYTES = 112 * 1024


def add_commands(command: Command, commands: Any) -> None:
    """Add ``reply`` (a leaf, through ``command``) and the ``replies`` group (to ``commands``)."""
    p = command("reply", _play, "play a stored quick reply on the doorbell's speaker")
    add_device_option(p)
    p.add_argument("name", metavar="NAME", help="the reply's name (doorward owner replies list)")
    p.add_argument("--camera", metavar="C", help="the camera whose speaker plays it")

    group: argparse.ArgumentParser = commands.add_parser(
        "replies", help="store, list and remove quick replies on the doorbell"
    )
    sub = group.add_subparsers(dest="replies_command", metavar="COMMAND", required=True)

    def leaf(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        add_common(parser, "owner")
        add_device_option(parser)
        parser.set_defaults(handler=command_handler(handler))
        return parser

    leaf("list", _list, "the quick replies stored on the doorbell")
    p = leaf("add", _add, "store a WAV or Ogg Opus file (at most 3 MiB, 15 s) as a quick reply")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument(
        "--name", required=True, metavar="N", help="1-32 of a-z, 0-9, - and _ (like away)"
    )
    p = leaf("remove", _remove, "delete a quick reply")
    p.add_argument("name", metavar="N")


def _play(args: argparse.Namespace) -> int:
    s = OwnerSession(args)

    async def play() -> Any:
        async with s.client() as api:
            return await api.play_reply(args.name, args.camera)

    played = run_async(play(), where=s.where)
    return emit(
        args,
        {"name": played.name, "camera": played.camera, "duration": played.duration_s},
        [f"played {played.name} on {played.camera} ({played.duration_s:.1f} s)"],
    )


def _list(args: argparse.Namespace) -> int:
    s = OwnerSession(args)

    async def fetch() -> list[Any]:
        async with s.client() as api:
            return await api.replies()

    replies = run_async(fetch(), where=s.where)
    rows = [_row(reply) for reply in replies]
    lines = [
        f"{r.name}  {r.duration_s:.1f} s  {r.source_format} {r.codec} {r.sample_rate} Hz "
        f"{r.channels} ch  added {iso(r.added_s)} by {r.owner_key_id[:12]}"
        for r in replies
    ] or ["no quick replies (add one: doorward owner replies add FILE --name NAME)"]
    return emit(args, {"replies": rows}, lines)


def _add(args: argparse.Namespace) -> int:
    path: Path = args.file
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CliError(
            f"{path}: {size} bytes; a quick reply may be at most {MAX_FILE_BYTES} bytes: "
            "shorten it or convert it to Ogg Opus (ffmpeg -i IN -ac 1 -c:a libopus OUT.ogg)"
        )
    data = path.read_bytes()
    s = OwnerSession(args)
    too_big = "uploading a quick reply larger than 112 KiB" if size > MAX_RELAYED_BYTES else None

    async def upload() -> Any:
        async with s.client(lan_only=too_big) as api:
            return await api.add_reply(args.name, data)

    reply = run_async(upload(), where=s.where)
    return emit(
        args,
        _row(reply),
        [
            f"stored {reply.name} ({reply.duration_s:.1f} s); play it: doorward owner reply {reply.name}"
        ],
    )


def _remove(args: argparse.Namespace) -> int:
    s = OwnerSession(args)

    async def remove() -> Any:
        async with s.client() as api:
            return await api.remove_reply(args.name)

    reply = run_async(remove(), where=s.where)
    return emit(args, _row(reply), [f"removed {reply.name}"])


def _row(reply: Any) -> dict[str, Any]:
    return {
        "name": reply.name,
        "duration": reply.duration_s,
        "added": reply.added_s,
        "owner_key_id": reply.owner_key_id,
        "format": reply.source_format,
        "codec": reply.codec,
        "sample_rate": reply.sample_rate,
        "channels": reply.channels,
        "bytes": reply.size,
        "sha256": reply.sha256,
    }
