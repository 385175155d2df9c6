"""The ``doorward`` command line: one place that turns errors into one actionable line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from crypto.errors import DoorwardError

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every ``doorward`` subcommand."""
    parser = argparse.ArgumentParser(
        prog="doorward",
        description="A doorbell camera that records for its owners and releases only with consent.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from hub import demo

    demo.add_parser(commands)

    from hub import _cli_audit, _cli_harness, _cli_owner, _cli_requester, _cli_serve

    _cli_serve.add_parser(commands)
    _cli_owner.add_parser(commands)
    _cli_requester.add_parser(commands)
    _cli_audit.add_parser(commands)
    _cli_harness.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``doorward`` command and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # The service logs its state changes; a one-shot command prints one line or one error, so
    # its own warnings (already turned into that error) stay out of the way unless asked for.
    quiet = logging.WARNING if args.command in ("serve", "demo", "harness") else logging.ERROR
    level = quiet - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        status: int = args.handler(args)
    except DoorwardError as exc:
        print(f"doorward: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("doorward: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
