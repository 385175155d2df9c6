"""``doorward owner live`` and ``doorward owner live-link``: watch the doorbell from the command
line (and record what arrived), or mint a single-use link for the browser page.

``add_live_commands(commands)`` adds both to the ``owner`` group's subparsers;
``python -m hub.cli.cmd_owner_live live …`` runs them alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from hub.cli.common import (
    CliError,
    add_common,
    add_device_option,
    connect,
    emit,
    entry_point,
    iso,
    open_profile,
    run_async,
)
from hub.client import LiveLink, LiveStats
from hub.wire.live_link import MAX_LINK_TTL_S

__all__ = ["add_live_commands", "main"]

_DEFAULT_LINK_TTL_S = 300


def add_live_commands(commands: Any) -> None:
    """Add ``live`` and ``live-link`` to the ``doorward owner`` subparsers."""
    p: argparse.ArgumentParser = commands.add_parser(
        "live", help="watch live view over WebRTC; --out records what arrives (MP4)"
    )
    add_common(p, "owner")
    p.set_defaults(handler=_live)
    add_device_option(p)
    p.add_argument("--camera", help="camera name (default: the device's first camera)")
    p.add_argument(
        "--seconds", type=_positive, metavar="N", help="stop after N seconds (default: Ctrl-C)"
    )
    p.add_argument(
        "--out", type=Path, metavar="FILE.mp4", help="record the received video and sound"
    )
    talk = p.add_mutually_exclusive_group()
    talk.add_argument(
        "--talk",
        type=Path,
        metavar="FILE.wav",
        help="talk back: play this sound file on the doorbell's speaker (refused while "
        "someone else is talking)",
    )
    talk.add_argument(
        "--talk-tone",
        type=_tone_hz,
        metavar="HZ",
        help="talk back with a sine tone of HZ (for tests), until the session ends",
    )

    p = commands.add_parser(
        "live-link", help="a short-lived, single-use link that opens live view in a browser"
    )
    add_common(p, "owner")
    p.set_defaults(handler=_live_link)
    add_device_option(p)
    p.add_argument("--camera", help="camera name (default: the device's first camera)")
    p.add_argument(
        "--ttl",
        type=_positive,
        default=_DEFAULT_LINK_TTL_S,
        metavar="S",
        help=f"seconds the link stays valid (at most {MAX_LINK_TTL_S}; default "
        f"{_DEFAULT_LINK_TTL_S})",
    )


def _live(args: argparse.Namespace) -> int:
    talk = _talk_sound(args)  # a bad file fails here, before the profile or the device
    profile = open_profile(args)
    keys, device = profile.keys(), profile.device(args.device)
    where = f"device {device.device_id} at {device.url}"
    if args.out is not None and args.out.suffix.lower() != ".mp4":
        raise CliError(f"--out must name an .mp4 file, got {args.out}")

    async def watch() -> tuple[LiveStats, float]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
        started = time.monotonic()
        try:
            # Through the relay only the call that sets the session up travels; the video
            # needs a network path to the doorbell (ICE host candidates: the same network, or a
            # VPN; no STUN or TURN server is configured).
            async with connect(args, profile, device, keys.signing_key) as api:
                stats = await api.live(
                    args.camera, seconds=args.seconds, out=args.out, stop=stop, talk=talk
                )
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
        return stats, time.monotonic() - started

    try:
        stats, elapsed_s = asyncio.run(watch())
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise CliError(f"live view from {where} failed: {exc or type(exc).__name__}") from exc
    heard = f" and {stats.audio_frames * 0.02:.1f} s of sound" if stats.audio_frames else ""
    lines = [f"received {stats.frames} frames{heard} in {elapsed_s:.1f} s"]
    if talk is not None:
        lines.append(f"talked with {talk.name} on the doorbell's speaker")
    if args.out is not None:
        lines.append(f"recorded to {args.out}")
    result = {
        "frames": stats.frames,
        "audio_frames": stats.audio_frames,
        "seconds": round(elapsed_s, 3),
        "out": args.out and str(args.out),
        "talk": talk.name if talk is not None else None,
    }
    return emit(args, result, lines)


def _talk_sound(args: argparse.Namespace) -> Any:
    """The ``--talk`` file or ``--talk-tone``, decoded and checked (None: just watch)."""
    if args.talk is None and args.talk_tone is None:
        return None
    from hub.client.talk import TalkFileError, TalkSound  # PyAV loads only to talk

    if args.talk_tone is not None:
        return TalkSound.tone(args.talk_tone)
    try:
        return TalkSound.from_file(args.talk)
    except TalkFileError as exc:
        raise CliError(f"--talk: {exc}") from exc


def _live_link(args: argparse.Namespace) -> int:
    if args.ttl > MAX_LINK_TTL_S:
        raise CliError(f"--ttl must be at most {MAX_LINK_TTL_S} s, got {args.ttl}")
    profile = open_profile(args)
    keys, device = profile.keys(), profile.device(args.device)
    where = f"device {device.device_id} at {device.url}"

    async def mint() -> LiveLink:
        async with connect(args, profile, device, keys.signing_key, lan_only="a live link") as api:
            return await api.live_link(args.camera, ttl_s=args.ttl)

    link = run_async(mint(), where=where)
    lines = [
        "Open this link in a browser on the doorbell's network (it works once):",
        f"  {link.url}",
        f"  valid until {iso(link.expires_s)}",
    ]
    if not args.json:
        _print_qr(link.url)
    return emit(args, {"url": link.url, "expires": link.expires_s}, lines)


def _print_qr(url: str) -> None:
    try:
        import segno

        segno.make(url, error="l").terminal(out=sys.stdout, compact=True)
    except (ImportError, ValueError):
        return  # the printed URL is enough


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return value


def _tone_hz(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 20.0 <= value <= 20_000.0:
        raise argparse.ArgumentTypeError(f"must be a frequency from 20 to 20000 Hz, got {text!r}")
    return value


def _owner_group(subparsers: Any) -> argparse.ArgumentParser:
    group: argparse.ArgumentParser = subparsers.add_parser("owner", help="live view")
    add_live_commands(group.add_subparsers(dest="owner_command", required=True))
    return group


main = entry_point(_owner_group, "owner")

if __name__ == "__main__":
    sys.exit(main())
