"""``doorward owner …``: the homeowner's phone on the command line.

Keys and pinned devices live in a profile (``hub.client.profile``). Every call to a device goes over TLS
pinned to the fingerprint learned at pairing, signed with the owner's key; segments are decrypted
and re-headed here, never on the device. ``python -m hub.cli.cmd_owner ARGS`` runs the group alone.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from hub.cli import (
    cmd_owner_backup,
    cmd_owner_decisions,
    cmd_owner_footage,
    cmd_owner_pairing,
    cmd_owner_replies,
    cmd_owner_status,
    cmd_owner_watch,
    cmd_relay,
)
from hub.cli.common import add_common, command_handler, entry_point

__all__ = ["add_parser", "main"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``owner`` command group to ``subparsers``."""
    group: argparse.ArgumentParser = subparsers.add_parser(
        "owner", help="the homeowner's phone: pair, watch clips, decide on requests, audit"
    )
    commands = group.add_subparsers(dest="owner_command", metavar="COMMAND", required=True)

    def command(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
        add_common(parser, "owner")
        parser.set_defaults(handler=command_handler(handler))
        return parser

    cmd_owner_pairing.add_commands(command)
    cmd_owner_footage.add_commands(command)
    cmd_owner_decisions.add_commands(command)
    cmd_owner_status.add_commands(command)
    cmd_owner_watch.add_commands(command)
    cmd_relay.add_share_address(command)
    cmd_owner_replies.add_commands(command, commands)
    cmd_owner_backup.add_commands(commands)
    cmd_relay.add_relay_group(commands, "owner")
    from hub.cli.cmd_owner_live import (
        add_live_commands,  # live view pulls in aiortc: only when wired
    )

    add_live_commands(commands)
    # The console builds on these commands' code, so it is looked up by name (as main.py does
    # for each group): the command line never depends on the console's package.
    importlib.import_module("hub.console.command").add_commands(command)
    return group


main = entry_point(add_parser, "owner")

if __name__ == "__main__":
    sys.exit(main())
