"""The ``doorward`` command line: one place that turns errors into one actionable line."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Collection, Sequence

from consent.text import escape
from crypto.errors import DoorwardError
from hub.cli.logs import configure_logging

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

# Each command and the module that adds it, in --help order. The modules are imported only when
# their command is wired: `doorward serve` must not wait for the client and the other commands.
_COMMAND_MODULES = {
    "demo": "hub.cli.cmd_demo",
    "serve": "hub.cli.cmd_serve",
    "doctor": "hub.cli.cmd_doctor",
    "owner": "hub.cli.cmd_owner",
    "requester": "hub.cli.cmd_requester",
    "audit": "hub.cli.cmd_audit",
    "harness": "hub.cli.cmd_harness",
}


def build_parser(*, only: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser for every ``doorward`` subcommand (or just those in ``only``)."""
    parser = argparse.ArgumentParser(
        prog="doorward",
        description="A doorbell camera that records for its owners and releases only with consent.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for name, module in _COMMAND_MODULES.items():
        if only is None or name in only:
            importlib.import_module(module).add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``doorward`` command and return its exit status."""
    words = sys.argv[1:] if argv is None else list(argv)
    # Options before the command take no value, so the first other word names the command.
    command = next((word for word in words if not word.startswith("-")), None)
    parser = build_parser(only=[command] if command in _COMMAND_MODULES else None)
    args = parser.parse_args(words)
    # The service logs its state changes; a one-shot command prints one line or one error, so
    # its own warnings (already turned into that error) stay out of the way unless asked for.
    quiet = logging.WARNING if args.command in ("serve", "demo", "harness") else logging.ERROR
    level = quiet - 10 * min(args.verbose, 2)
    configure_logging(level, service=args.command == "serve")
    try:
        status: int = args.handler(args)
    except DoorwardError as exc:
        print(f"doorward: error: {escape(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("doorward: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
