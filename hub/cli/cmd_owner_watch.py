"""``doorward owner watch``: the doorbell's events as they happen (presses, motion, requests),
on the LAN's WebSocket or, away from home, through the relay (age-encrypted to this owner)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from consent.text import escape
from hub.cli.common import CliError, Command, OwnerSession, add_device_option, iso, run_async
from hub.client import EventMessage
from hub.wire.events import EVENT_KINDS

__all__ = ["add_commands", "event_line"]


def add_commands(command: Command) -> None:
    """Add ``watch`` to the ``owner`` group."""
    p = command("watch", _watch, "print the doorbell's events as they happen (Ctrl-C stops)")
    add_device_option(p)
    p.add_argument(
        "--kind",
        action="append",
        dest="kinds",
        metavar="KIND",
        help=f"only this kind (repeat); one of {', '.join(sorted(EVENT_KINDS))}",
    )
    p.add_argument("--count", type=int, metavar="N", help="stop after N events")


def _watch(args: argparse.Namespace) -> int:
    kinds = tuple(args.kinds or ())
    unknown = sorted(set(kinds) - set(EVENT_KINDS))
    if unknown:
        raise CliError(
            f"unknown event kind(s) {', '.join(unknown)}; the kinds are "
            f"{', '.join(sorted(EVENT_KINDS))}"
        )
    if args.count is not None and args.count < 1:
        raise CliError(f"--count must be at least 1, got {args.count}")
    s = OwnerSession(args)

    async def watch() -> int:
        seen = 0
        async with s.client(events=True) as api:
            print("doorward: watching (Ctrl-C stops)", file=sys.stderr, flush=True)
            async for event in api.events(kinds):
                print(_json(event) if args.json else escape(event_line(event)), flush=True)
                seen += 1
                if args.count is not None and seen >= args.count:
                    break
        return seen

    with contextlib.suppress(KeyboardInterrupt):
        run_async(watch(), where=s.where, deadline_s=None)  # it watches until stopped
    return 0


def event_line(event: EventMessage) -> str:
    """One event in a line: its time, kind and fields."""
    fields = " ".join(f"{name}={_value(value)}" for name, value in sorted(event.data.items()))
    return f"{iso(event.time_s)} {event.kind} {fields}".rstrip()


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _json(event: EventMessage) -> str:
    return json.dumps(
        {"seq": event.seq, "kind": event.kind, "time": event.time_s, "data": event.data},
        sort_keys=True,
    )
