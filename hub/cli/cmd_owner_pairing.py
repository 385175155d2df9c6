"""``doorward owner`` keys, discovery, pairing and the household: init, discover, pair, owners,
export-identity.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from crypto.keys import KeyBundle, write_secret_file
from hub.cli.common import (
    CliError,
    Command,
    OwnerSession,
    add_device_option,
    emit,
    open_profile,
    run_async,
)
from hub.cli.owner_ops import (
    DISCOVER_S,
    OWNER_ACTIONS,
    change_owners,
    pair_profile,
    pairing_uri,
    url_of,
)
from hub.wire.discovery import browse

__all__ = ["add_commands"]

_DISCOVER_S = DISCOVER_S


def add_commands(command: Command) -> None:
    """Add ``init``, ``discover``, ``pair``, ``owners``, ``export-identity`` to the ``owner`` group."""
    p = command("init", _init, "make this owner's keys (Ed25519 + age)")
    p.add_argument("--name", default="owner", help="name shown to the device and other owners")
    p.add_argument("--recipient", choices=("hybrid", "x25519"), default="hybrid")

    p = command("discover", _discover, "list Doorward devices on the LAN (zeroconf)")
    p.add_argument("--timeout", type=float, default=_DISCOVER_S, metavar="S")

    p = command("pair", _pair, "pair with a device using its setup URI (the QR code) or code")
    p.add_argument(
        "uri",
        metavar="URI_OR_CODE",
        nargs="?",
        default="-",
        help="doorward://pair?… or the 8-digit code; '-' or nothing: ask for it on the terminal "
        "or read one line from standard input (a code given here shows in the process list)",
    )
    p.add_argument("--url", help="https://HOST:PORT when the URI has no address")

    p = command("owners", _owners, "list, remove or approve owners")
    add_device_option(p)
    p.add_argument("action", nargs="?", choices=OWNER_ACTIONS, default="list")
    p.add_argument(
        "key_id",
        nargs="?",
        metavar="KEY_ID",
        help="key ids are base64url: write -- before one that begins with '-'",
    )

    p = command("export-identity", _export_identity, "write the age identity file (0600)")
    p.add_argument("--out", type=Path, default=Path("doorward-owner.age.key"), metavar="FILE")


# -- keys, discovery, pairing ------------------------------------------------------------------


def _init(args: argparse.Namespace) -> int:
    profile = open_profile(args)
    keys = KeyBundle.generate(args.recipient)
    profile.create(keys, {"name": args.name, "recipient_kind": args.recipient})
    return emit(
        args,
        {
            "profile": str(profile.directory),
            "key_id": keys.key_id,
            "recipient": str(keys.recipient),
        },
        [
            f"owner keys made in {profile.directory}",
            f"key id {keys.key_id}; age recipient ({args.recipient}) {str(keys.recipient)[:32]}…",
            "next: doorward owner pair (it asks for the URI or code the doorbell shows)",
        ],
    )


def _discover(args: argparse.Namespace) -> int:
    found = run_async(browse(args.timeout), where="the LAN")
    pinned = {d.device_id for d in open_profile(args).devices()}
    rows = [
        {
            "device_id": d.device_id,
            "name": d.name,
            "address": f"{d.addresses[0] if d.addresses else '?'}:{d.port}",
            "pairing": d.pairing,
            "fingerprint": d.fingerprint,
            "paired_here": d.device_id in pinned,
        }
        for d in found
    ]
    lines = [
        f"{r['device_id']}  {r['name']}  {r['address']}  pairing {r['pairing']}"
        + ("  (paired with this profile)" if r["paired_here"] else "")
        for r in rows
    ] or [f"no Doorward device answered within {args.timeout:g} s"]
    return emit(args, {"devices": rows}, lines)


def _pair(args: argparse.Namespace) -> int:
    profile = open_profile(args)
    profile.keys()  # no keys yet: say so before asking for the code
    text = _setup_text(args.uri)
    uri = run_async(pairing_uri(text), where="the LAN")
    url = args.url or url_of(uri)
    device, relay_note = run_async(pair_profile(profile, uri, url), where=f"the device at {url}")
    lines = [
        f"paired with device {device.device_id} at {url}",
        f"pinned its TLS key {device.fingerprint}; clips recorded from now on are "
        "encrypted to your key",
    ]
    if relay_note:
        lines.append(relay_note)
    elif device.relay_url:
        lines.append(f"pinned its relay key; away from home it answers through {device.relay_url}")
    return emit(
        args,
        {
            "device_id": device.device_id,
            "fingerprint": device.fingerprint,
            "url": url,
            "relay_url": device.relay_url,
            "relay_key_pinned": device.relay_key_config is not None,
        },
        lines,
    )


def _setup_text(arg: str) -> str:
    """The setup URI or code: from the command line, or (``-``) from the terminal without echo or
    one line of standard input, so that it stays out of the process list and the shell history."""
    if arg != "-":
        return arg
    if sys.stdin.isatty():
        return getpass.getpass("setup URI or code (not shown): ")
    return sys.stdin.readline()


def _export_identity(args: argparse.Namespace) -> int:
    profile = open_profile(args)
    keys = profile.keys()
    text = profile.identity_path.read_bytes()
    write_secret_file(args.out, text)
    return emit(
        args,
        {"identity": str(args.out), "recipient": str(keys.recipient)},
        [f"age identity written to {args.out} (mode 0600); use it with: age -d -i {args.out} FILE"],
    )


def _owners(args: argparse.Namespace) -> int:
    s = OwnerSession(args)
    if args.action != "list" and not args.key_id:
        raise CliError(f"owners {args.action} needs the owner's KEY_ID")

    async def go() -> list[Any]:
        async with s.client() as api:
            return await change_owners(api, args.action, args.key_id)

    owners = run_async(go(), where=s.where)
    rows = [
        {"key_id": o.key_id, "name": o.name, "admin": o.admin, "added": o.added_s} for o in owners
    ]
    lines = [f"{o.key_id}  {o.name}{'  (admin)' if o.admin else ''}" for o in owners]
    if args.action == "remove":
        lines.insert(0, f"owner {args.key_id} removed; new clips are no longer encrypted to it")
    elif args.action == "approve":
        lines.insert(0, f"{args.key_id} may pair during the next few minutes")
    return emit(args, {"owners": rows, "action": args.action}, lines)
