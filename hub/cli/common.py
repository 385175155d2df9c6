"""Plumbing shared by the ``doorward owner``, ``requester`` and ``audit`` command groups: common
flags, profile lookup, ``--json`` output, running a coroutine with network errors made readable."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import re
import ssl
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from consent.text import escape
from crypto.errors import DoorwardError
from crypto.tls import PinMismatch
from hub.cli.transport import VIA, DeviceConnection
from hub.client import DoorwardClient
from hub.client.profile import PinnedDevice, Profile, ProfileKind, default_profile_dir

__all__ = [
    "CliError",
    "Command",
    "OwnerSession",
    "add_common",
    "add_device_option",
    "add_via_option",
    "client_for",
    "command_handler",
    "connect",
    "emit",
    "entry_point",
    "guarded",
    "iso",
    "open_profile",
    "parse_duration",
    "parse_time",
    "run_async",
]

T = TypeVar("T")

# Adds one leaf command to a group: (name, handler, help) -> its parser, for the command's options.
Command = Callable[[str, Any, str], argparse.ArgumentParser]

COMMAND_TIMEOUT_S = 120.0
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class CliError(DoorwardError):
    """A command cannot go on; the message says what to do instead."""


def add_common(parser: argparse.ArgumentParser, kind: ProfileKind) -> None:
    """``--profile DIR`` and ``--json``, on every leaf command."""
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help=f"profile directory (default: {default_profile_dir(kind)})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(profile_kind=kind)


def command_handler(
    handler: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """``handler`` with file-system failures (an unwritable ``--out``) as one-line CliErrors."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise CliError(f"{where}{exc.strerror or exc}") from exc

    return run


def open_profile(args: argparse.Namespace, kind: ProfileKind | None = None) -> Profile:
    """The profile at ``--profile``, else the default profile of ``kind`` (default: the group's)."""
    kind = kind or args.profile_kind
    return Profile(args.profile or default_profile_dir(kind), kind)


def emit(args: argparse.Namespace, result: dict[str, Any], lines: Sequence[str]) -> int:
    """Print ``result`` as one JSON object with ``--json``, else the human ``lines``.

    Lines often carry text a stranger wrote (a requester's name, reason, a device's answer), so
    each is escaped (``consent.text.escape``): no newline, terminal control or bidirectional
    override in it reaches the terminal. JSON escapes them itself (``ensure_ascii``)."""
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for line in lines:
            print(escape(line))
    return 0


def client_for(device: PinnedDevice, key: Any, *, url: str | None = None) -> DoorwardClient:
    """A signed client pinned to ``device``'s TLS key, at ``url`` if given, else its stored URL."""
    return DoorwardClient(
        url or device.url, fingerprint=device.fingerprint, device_id=device.device_id, key=key
    )


def add_via_option(parser: argparse.ArgumentParser) -> None:
    """``--via lan|relay|auto``, on every command that talks to a device."""
    parser.add_argument(
        "--via",
        choices=VIA,
        default="auto",
        help="reach the device on its LAN address, through the relay broker, or (auto, the "
        "default) on the LAN when it answers there, else through the relay",
    )


def connect(
    args: argparse.Namespace,
    profile: Profile,
    device: PinnedDevice,
    key: Any,
    *,
    lan_only: str | None = None,
    identity: Any = None,
) -> DeviceConnection:
    """The one way a command reaches a device: ``async with connect(...) as api``. ``--via``
    (default auto) picks the LAN or the relay; ``lan_only`` names what cannot go over the relay
    (auto then stays on the LAN, ``--via relay`` is refused with that reason)."""
    return DeviceConnection(
        device,
        key,
        via=getattr(args, "via", "auto"),
        account=profile.relay_account(),
        login_hint=f"doorward {profile.kind} relay login --password-file FILE",
        lan_only=lan_only,
        identity=identity,
    )


def run_async(
    coro: Coroutine[Any, Any, T],
    *,
    where: str = "the device",
    deadline_s: float | None = COMMAND_TIMEOUT_S,
) -> T:
    """Run ``coro`` to completion (within ``deadline_s``; None: for as long as it runs); TLS pin,
    connection and timeout failures become CliErrors."""
    return asyncio.run(guarded(coro, where, deadline_s))


async def guarded(coro: Awaitable[T], where: str, deadline_s: float | None) -> T:
    """Await ``coro`` within ``deadline_s``; TLS pin, connection and timeout failures (and a
    malformed record) become CliErrors that say what to do."""
    try:
        return await asyncio.wait_for(coro, deadline_s)
    except DoorwardError:  # a relay timeout, too, says what happened better than we could
        raise
    except TimeoutError:
        raise CliError(
            f"{where} did not answer within {deadline_s:.0f} s; is it running and reachable?"
        ) from None
    except aiohttp.ClientConnectorCertificateError as exc:
        raise _pin_error(where, exc.certificate_error) from exc
    except aiohttp.ClientSSLError as exc:
        raise _pin_error(where, exc.__cause__ or exc) from exc
    except aiohttp.ClientConnectorError as exc:
        raise CliError(
            f"cannot connect to {where} ({exc.strerror or exc}); is it running on that address?"
        ) from exc
    except aiohttp.ClientError as exc:
        raise CliError(f"connection to {where} failed: {exc}") from exc
    except ssl.SSLError as exc:
        raise _pin_error(where, exc) from exc
    except ValueError as exc:  # an id that is not a plain path segment, a malformed record
        raise CliError(str(exc)) from exc


def _pin_error(where: str, cause: BaseException) -> CliError:
    if isinstance(cause, PinMismatch) or "pinned" in str(cause):
        return CliError(
            f"{where} presented a TLS key other than the pinned one: refusing to talk to it "
            "(if the device was reset, pair again)"
        )
    return CliError(f"TLS with {where} failed: {cause}")


def parse_time(text: str) -> float:
    """Seconds since 1970 from an ISO 8601 time (UTC unless it says otherwise) or a number."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"time must be ISO 8601 (2026-01-31T18:00:00Z) or seconds since 1970, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_duration(text: str) -> int:
    """Seconds from ``90s``, ``15m``, ``12h`` or ``7d``."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"duration must be a positive number with s, m, h or d (7d), got {text!r}"
        )
    return int(match.group(1)) * _UNITS_S[match.group(2)]


def iso(seconds: float | None) -> str:
    """``seconds`` since 1970 as a UTC ISO 8601 time to the second, or ``-`` for None."""
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry_point(
    add_parser: Callable[[Any], argparse.ArgumentParser], group: str
) -> Callable[..., int]:
    """A ``main(argv)`` running one command group alone (``python -m hub.cli.cmd_owner init``)."""

    def main(argv: Sequence[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog="doorward")
        add_parser(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args([group, *(sys.argv[1:] if argv is None else argv)])
        try:
            return int(args.handler(args))
        except DoorwardError as exc:
            print(f"doorward: error: {escape(str(exc))}", file=sys.stderr)
            return 1

    return main


class OwnerSession:
    """An owner command's profile, keys, pinned device (``--device``) and a client for it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.profile: Profile = open_profile(args)
        self.keys = self.profile.keys()
        self.device = self.profile.device(args.device)
        self.where = f"device {self.device.device_id} at {self.device.url or 'the relay'}"
        self._args = args

    def client(self, *, lan_only: str | None = None, events: bool = False) -> DeviceConnection:
        """A signed client for the device, on the LAN or through the relay (``--via``); use it
        as an async context manager. ``events``: it will read the owner's event stream (through
        the relay that needs the owner's age identity)."""
        return connect(
            self._args,
            self.profile,
            self.device,
            self.keys.signing_key,
            lan_only=lan_only,
            identity=self.keys.age_identity if events else None,
        )


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device ID`` and ``--via``, for commands that talk to one of several paired devices."""
    parser.add_argument("--device", metavar="ID", help="device id (when several are paired)")
    add_via_option(parser)
