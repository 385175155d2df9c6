"""``doorward owner console``: start the owner's console and open it in the browser."""

from __future__ import annotations

import argparse
import asyncio
import sys
import webbrowser

from hub.cli.common import Command, add_via_option, open_profile
from hub.console.app import serve

__all__ = ["add_commands"]


def add_commands(command: Command) -> None:
    """Add ``console`` to the ``owner`` group."""
    p = command("console", _console, "the owner's web console on this machine (127.0.0.1 only)")
    p.add_argument(
        "--port", type=int, default=0, metavar="N", help="port on 127.0.0.1 (default: any free)"
    )
    p.add_argument(
        "--no-browser", action="store_true", help="print the URL only; do not open a browser"
    )
    add_via_option(p)


def _console(args: argparse.Namespace) -> int:
    profile = open_profile(args)
    profile.keys()  # no keys yet: say so now, not on the first page

    def ready(url: str) -> None:
        # The URL holds this launch's secret: it goes to the owner's terminal only, never a log.
        print(f"doorward: the owner's console is at {url}", flush=True)
        print("doorward: keep this address to yourself; Ctrl-C stops the console", flush=True)
        if not args.no_browser:
            webbrowser.open(url)

    try:
        asyncio.run(serve(profile, port=args.port, via=args.via, ready=ready))
    except KeyboardInterrupt:
        print("doorward: console stopped", file=sys.stderr)
    return 0
