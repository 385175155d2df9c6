"""The relay on the command line: ``doorward owner|requester relay login``, ``doorward owner relay
refresh`` and ``doorward owner share-address``.

A client logs in to the relay broker as its key id (``crypto.keys.key_id`` of its signing key)
with a password from the relay's operator; ``relay login`` keeps the password in the profile
(mode 0600, never printed) with the broker's CA if it is not a public one. The device's relay key
is pinned at pairing; ``relay refresh`` compares it with the one the device serves on the LAN and
replaces it only with ``--re-pin``. ``share-address`` prints the device's request address
(``hub.relay.address``) and its QR code for requesters.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import ssl
import sys
from pathlib import Path
from typing import Any

from crypto.errors import DoorwardError
from crypto.keys import read_secret_file
from hub.cli.common import (
    CliError,
    OwnerSession,
    add_common,
    add_device_option,
    command_handler,
    emit,
    open_profile,
    run_async,
)
from hub.client.profile import PinnedDevice, ProfileKind

__all__ = ["add_relay_group", "add_share_address", "print_qr"]

_MAX_CA_BYTES = 1024 * 1024


def add_relay_group(commands: Any, kind: ProfileKind) -> None:
    """Add ``relay login`` (and, for owners, ``relay refresh``) to a group's subparsers."""
    group: argparse.ArgumentParser = commands.add_parser(
        "relay",
        help="log in to the relay broker" + (", refresh the relay key" if kind == "owner" else ""),
    )
    leaves = group.add_subparsers(dest="relay_command", metavar="COMMAND", required=True)

    def leaf(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = leaves.add_parser(name, help=help_text)
        add_common(parser, kind)
        parser.set_defaults(handler=command_handler(handler))
        return parser

    p = leaf("login", _login, "keep this profile's relay broker password (0600) and CA")
    p.add_argument(
        "--password-file",
        type=Path,
        required=True,
        metavar="FILE",
        help="a file (mode 0600) holding the password the relay's operator gave for this "
        "profile's client id, on its first line",
    )
    p.add_argument(
        "--ca-file", type=Path, metavar="CA", help="the CA of the broker's certificate (PEM)"
    )
    p.add_argument(
        "--url",
        metavar="mqtts://HOST:PORT",
        help="the broker's listener for clients (default: the one each device gave)",
    )
    if kind == "owner":
        p = leaf("refresh", _refresh, "compare the device's relay key with the pinned one (LAN)")
        p.add_argument("--device", metavar="ID", help="device id (when several are paired)")
        p.add_argument(
            "--re-pin",
            action="store_true",
            help="pin the relay key the device serves now even if it differs (after a reset)",
        )


def add_share_address(command: Any) -> None:
    """Add ``share-address`` to the ``owner`` group."""
    p = command("share-address", _share_address, "print the device's request address (URI, QR)")
    add_device_option(p)
    p.add_argument("--qr", action="store_true", help="print its QR code on the terminal too")
    p.add_argument(
        "--qr-file", type=Path, metavar="FILE", help="write its QR code to FILE (.png or .svg)"
    )


# -- login ---------------------------------------------------------------------------------------


def _login(args: argparse.Namespace) -> int:
    from crypto.keys import key_id
    from hub.relay.device import RelayError, parse_relay_url

    profile = open_profile(args)
    keys = profile.keys()
    client_id = key_id(keys.signing_key.public_key())
    if args.url is not None:
        try:
            host, port = parse_relay_url(args.url)
        except RelayError as exc:
            raise CliError(f"--url: {exc}") from None
        url: str | None = f"mqtts://[{host}]:{port}" if ":" in host else f"mqtts://{host}:{port}"
    else:
        url = None
    try:
        lines = read_secret_file(args.password_file).decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise CliError(f"{args.password_file} is not text: write the password in it") from None
    except DoorwardError as exc:
        raise CliError(str(exc).replace("key file", "password file")) from None
    if not lines or not lines[0].strip():
        raise CliError(
            f"{args.password_file} is empty: write the broker password on its first line"
        )
    ca_pem = None
    if args.ca_file is not None:
        ca_pem = _read_ca(args.ca_file)
    profile.set_relay_account(url, lines[0].strip(), ca_pem)
    where = url or "the relay each device gave at pairing"
    return emit(
        args,
        {"client_id": client_id, "url": url, "ca_file": ca_pem is not None},
        [
            f"relay login kept in {profile.directory}: client id {client_id} at {where}",
            "the relay's operator must have a password for this client id (docs/relay.md)",
        ],
    )


def _read_ca(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            pem = f.read(_MAX_CA_BYTES + 1)
    except OSError as exc:
        raise CliError(f"cannot read the CA file {path}: {exc.strerror or exc}") from None
    if len(pem) > _MAX_CA_BYTES:
        raise CliError(f"the CA file {path} is over {_MAX_CA_BYTES} bytes")
    try:
        ssl.create_default_context(cadata=pem.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError):
        raise CliError(f"the CA file {path} holds no PEM certificate") from None
    return pem


# -- refresh -------------------------------------------------------------------------------------


def _refresh(args: argparse.Namespace) -> int:
    from hub.wire import ohttp
    from hub.wire.relay_keys import RelayKeys

    args.via = "lan"  # the relay key is checked over the pinned LAN connection only
    s = OwnerSession(args)

    async def fetch() -> tuple[bytes, str | None]:
        async with s.client() as api:
            return await api.relay_info()

    served, relay_url = run_async(fetch(), where=s.where)
    try:
        RelayKeys.parse(served)
    except ohttp.OhttpError as exc:
        raise CliError(
            f"device {s.device.device_id} serves an unusable relay key ({exc})"
        ) from None
    pinned = s.device.relay_key_config
    lines = []
    if pinned is None:
        lines.append(f"relay key of device {s.device.device_id} pinned ({_digest(served)})")
    elif pinned == served:
        lines.append(f"relay key of device {s.device.device_id} unchanged ({_digest(served)})")
    elif not args.re_pin:
        raise CliError(
            f"device {s.device.device_id} serves a relay key ({_digest(served)}) other than the "
            f"one pinned at pairing ({_digest(pinned)}); nothing was changed. If its relay key "
            "was reset on purpose, run 'doorward owner relay refresh --re-pin' on your home "
            "network, and share the new request address"
        )
    else:
        lines.append(
            f"relay key of device {s.device.device_id} re-pinned: {_digest(pinned)} -> "
            f"{_digest(served)}; share the new request address"
        )
    if relay_url is not None and relay_url != s.device.relay_url:
        lines.append(f"relay URL {s.device.relay_url or '(none)'} -> {relay_url}")
    device = dataclasses.replace(
        s.device, relay_key_config=served, relay_url=relay_url or s.device.relay_url
    )
    s.profile.pin(device)
    return emit(
        args,
        {
            "device_id": device.device_id,
            "relay_key": _digest(served),
            "relay_url": device.relay_url,
            "changed": pinned is not None and pinned != served,
        },
        lines,
    )


def _digest(config: bytes) -> str:
    """A short name of a key configuration for people to compare (not secret)."""
    return "sha256:" + hashlib.sha256(config).hexdigest()[:16]


# -- share-address -------------------------------------------------------------------------------


def _share_address(args: argparse.Namespace) -> int:
    from hub.relay.address import AddressError, RequestAddress

    profile = open_profile(args)
    device = profile.device(args.device)
    account = profile.relay_account()
    relay_url = device.relay_url or (account.url if account else None)
    missing = _address_missing(device, relay_url)
    if missing:
        raise CliError(f"no request address for device {device.device_id}: {missing}")
    assert device.signing_key is not None
    assert device.relay_key_config is not None
    assert relay_url is not None
    try:
        address = RequestAddress(
            device.device_id, relay_url, device.signing_key, device.relay_key_config
        )
    except AddressError as exc:
        raise CliError(f"no request address for device {device.device_id}: {exc}") from None
    uri = address.to_uri()
    if args.qr_file is not None:
        _save_qr(uri, args.qr_file)
    result = {"uri": uri, "device_id": device.device_id, "relay_url": address.relay_url}
    lines = [
        uri,
        "A requester asks with: doorward requester ask '<this address>' …",
        "It is not a secret; every request still passes your policy and needs your approval.",
    ]
    if args.qr_file is not None:
        result["qr_file"] = str(args.qr_file)
        lines.append(f"QR code written to {args.qr_file}")
    emit(args, result, lines)
    if args.qr and not args.json:
        print_qr(uri)
    return 0


def _address_missing(device: PinnedDevice, relay_url: str | None) -> str | None:
    if device.signing_key is None:
        return "its signing key was not pinned; pair with it again"
    if device.relay_key_config is None:
        return "no relay key is pinned; run 'doorward owner relay refresh' on your home network"
    if relay_url is None:
        return (
            "it told no relay URL at pairing ([relay] is not configured on it?); set one with "
            "'doorward owner relay login --password-file FILE --url mqtts://HOST:PORT'"
        )
    return None


def print_qr(text: str) -> None:
    """``text``'s QR code on standard output, two modules per character row (half blocks)."""
    import segno

    segno.make(text, error="m").terminal(out=sys.stdout, compact=True)


def _save_qr(text: str, path: Path) -> None:
    import segno

    if path.suffix.lower() not in (".png", ".svg"):
        raise CliError(f"--qr-file must end in .png or .svg, got {path.name}")
    segno.make(text, error="m").save(str(path), scale=4, border=4)
