"""``doorward serve``: run the doorbell (cameras, HTTPS API, zeroconf) until SIGINT/SIGTERM.

The lead wires :func:`add_parser` into ``hub.cli.main``; ``python -m hub.cli.cmd_serve`` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from crypto.errors import DoorwardError
from hub.server.config import EXAMPLE_CONFIG, BackupConfig, ServeConfig, load_config
from hub.server.serve import serve

__all__ = ["add_parser", "main", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the doorbell: cameras, HTTPS API, zeroconf",
        description=(
            "Record every camera, serve the signed HTTPS API on TLS 1.3 and advertise the "
            "device on the LAN. The first start creates the device's keys and prints the setup "
            "code and its QR code. Flags override the TOML config file."
        ),
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
    parser.add_argument("--data", type=Path, dest="data_dir", metavar="DIR", help="data directory")
    parser.add_argument(
        "--camera",
        action="append",
        dest="cameras",
        metavar="SPEC",
        help=(
            "[NAME=]simulated[:SCENARIO], a video file, v4l2:/dev/videoN or rtsp://… (repeat); "
            "'NAME=MAIN detect=SUB' records MAIN undecoded and runs motion on SUB"
        ),
    )
    parser.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="HTTPS port (default 8443; 0 picks one)")
    parser.add_argument("--name", help="display name advertised on the LAN")
    parser.add_argument(
        "--no-advertise",
        dest="advertise",
        action="store_const",
        const=False,
        default=None,
        help="do not advertise on zeroconf",
    )
    parser.add_argument(
        "--backup",
        metavar="s3://BUCKET/PREFIX",
        help="upload every segment, manifest and audit checkpoint to this S3 bucket and prefix",
    )
    parser.add_argument("--backup-endpoint", metavar="URL", help="the S3 API's URL for --backup")
    parser.add_argument(
        "--backup-credentials",
        type=Path,
        metavar="FILE",
        help="AWS-style credentials file (mode 0600) for --backup; else AWS_ACCESS_KEY_ID/…",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print a config file with every option and its default, then exit",
    )
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``doorward serve`` with parsed ``args`` (flags override the config file) until
    SIGINT/SIGTERM; returns the exit status. Blocks: it starts its own event loop."""
    if args.print_config:
        print(EXAMPLE_CONFIG, end="")
        return 0
    overrides = {
        "data_dir": args.data_dir,
        "cameras": tuple(args.cameras) if args.cameras else None,
        "host": args.host,
        "port": args.port,
        "name": args.name,
        "advertise": args.advertise,
    }
    config = load_config(args.config, overrides)
    config = with_backup_flags(config, args)
    _limit_malloc_arenas()
    return asyncio.run(
        serve(
            config,
            reload=lambda: with_backup_flags(load_config(args.config, overrides), args),
        )
    )


# glibc's mallopt(M_ARENA_MAX): by default every thread that allocates may get its own arena (up
# to 8 per core), each keeping its freed memory. A doorbell serving many cameras runs three
# threads per camera; with two arenas 16 two-stream cameras held about 70 MB less (409 against
# 340 MB, measured once on 2 shared cores).
_M_ARENA_MAX = -8
_ARENAS = 2


def _limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas before the cameras' threads start (unless MALLOC_ARENA_MAX is
    set, which wins); elsewhere than glibc, nothing."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    if mallopt(_M_ARENA_MAX, _ARENAS) != 1:
        logging.getLogger(__name__).debug("serve.mallopt_refused arenas=%d", _ARENAS)


def with_backup_flags(config: ServeConfig, args: argparse.Namespace) -> ServeConfig:
    """``--backup``, ``--backup-endpoint`` and ``--backup-credentials`` over the file's
    ``[backup]`` section."""
    flags = {
        "url": args.backup,
        "endpoint": args.backup_endpoint,
        "credentials_file": args.backup_credentials,
    }
    flags = {name: value for name, value in flags.items() if value is not None}
    if not flags:
        return config
    table: dict[str, Any] = {}
    if config.backup is not None:
        table = {f.name: getattr(config.backup, f.name) for f in fields(config.backup)}
        if "url" in flags:
            table.pop("prefix", None)
    table.update(flags)
    return replace(config, backup=BackupConfig.from_table(table))


def main(argv: Sequence[str] | None = None) -> int:
    """``doorward serve`` alone (``python -m hub.cli.cmd_serve``); logs at INFO to stderr and
    returns 1 with a one-line message on a DoorwardError."""
    parser = argparse.ArgumentParser(prog="doorward")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(args.handler(args))
    except DoorwardError as exc:
        print(f"doorward: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
