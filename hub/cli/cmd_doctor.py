"""``doorward doctor``: check a board before its first start as a doorbell (see hub.server.doctor)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from hub.server.config import load_config

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``doctor`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "doctor",
        help="check this board before first use: cameras, encoder, disk, clock, permissions",
        description=(
            "Check that the cameras open and deliver frames, libx264 encodes, the data folder is "
            "private and its disk has room and speed, the clock is sane and the descriptor limit "
            "is high enough. Each failure says how to fix it; the exit status is 1 if any check "
            "fails. Run it as the service user with the service's config."
        ),
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML config file (as serve)")
    parser.add_argument("--data", type=Path, dest="data_dir", metavar="DIR", help="data directory")
    parser.add_argument(
        "--camera",
        action="append",
        dest="cameras",
        metavar="SPEC",
        help="a camera (repeat), as serve",
    )
    parser.add_argument(
        "--time-url",
        metavar="URL",
        help="compare the clock with this server's HTTP Date header (e.g. https://deb.debian.org)",
    )
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run every check; print one line per check (or JSON); 0 if all pass, else 1."""
    from hub.server.doctor import run_doctor

    overrides = {
        "data_dir": args.data_dir,
        "cameras": tuple(args.cameras) if args.cameras else None,
    }
    config = load_config(args.config, overrides)
    findings = asyncio.run(run_doctor(config, time_url=args.time_url))
    passed = all(finding.ok for finding in findings)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": passed,
                    "checks": [
                        {"check": f.check, "ok": f.ok, "detail": f.detail, "fix": f.fix, **f.facts}
                        for f in findings
                    ],
                },
                indent=2,
            )
        )
    else:
        for finding in findings:
            print(f"{'ok  ' if finding.ok else 'FAIL'}  {finding.check}: {finding.detail}")
            if not finding.ok and finding.fix:
                print(f"      fix: {finding.fix}")
        failed = sum(not f.ok for f in findings)
        print(
            "doorward doctor: every check passed"
            if passed
            else f"doorward doctor: {failed} check(s) failed",
            file=sys.stdout if passed else sys.stderr,
        )
    return 0 if passed else 1
