"""``doorward requester …``: ask a doorbell's owner for footage, fetch and verify what they release.

A requester's profile holds its keys and identity; ``ask`` pins the device (id and TLS
fingerprint) it was given. A fetched release is checked against every signature, hash and audit
proof, decrypted and joined here (``consent.requester.open_bundle``), and its device must be the
one the request went to: the bundle's device key must be the key of the pinned TLS fingerprint
(the device's TLS key is its Ed25519 identity key), and once checked it is pinned too. ``verify``
checks a bundle on disk against that pinned key, or against ``--device-key``; with neither it
refuses, since a bundle that is only consistent with itself proves nothing about who made it.
Bundles and downloads are capped (``--max-size``, 2 GiB by default).
``python -m hub.cli.cmd_requester ARGS`` runs the group alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import secrets
import sys
import time
from pathlib import Path
from typing import IO, Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from consent.bundle import BundleLimits
from consent.errors import BundleInvalid
from consent.models import CATEGORIES, LEGAL_BASES, REQUESTER_KINDS, RequesterIdentity
from consent.requester import VerificationReport, bundle_device_id, open_bundle
from consent.requests import request_id_of, sign_request
from consent.text import unsafe_character
from crypto.errors import DoorwardError
from crypto.keys import KeyBundle, load_ed25519_public
from hub.cli.cmd_relay import add_relay_group
from hub.cli.common import (
    CliError,
    add_common,
    add_via_option,
    command_handler,
    connect,
    emit,
    entry_point,
    iso,
    open_profile,
    parse_duration,
    parse_time,
    run_async,
)
from hub.cli.progress import Progress, ProgressWriter
from hub.client import ApiError, DownloadTooLarge, RequestInfo
from hub.client.profile import PinnedDevice, Profile

__all__ = ["add_parser", "main"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``requester`` command group to ``subparsers``."""
    group: argparse.ArgumentParser = subparsers.add_parser(
        "requester", help="ask for footage, then fetch and verify what the owner releases"
    )
    commands = group.add_subparsers(dest="requester_command", metavar="COMMAND", required=True)

    def command(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
        add_common(parser, "requester")
        parser.set_defaults(handler=command_handler(handler))
        return parser

    p = command("init", _init, "make this requester's keys and record who you are")
    p.add_argument("--name", required=True)
    p.add_argument("--organisation", default="")
    p.add_argument("--kind", required=True, choices=REQUESTER_KINDS)
    p.add_argument("--jurisdiction", default="")
    p.add_argument("--contact", default="")
    p.add_argument("--recipient", choices=("x25519", "hybrid"), default="x25519")

    p = command("ask", _ask, "send a signed request for footage to a device")
    p.add_argument(
        "url",
        metavar="URL",
        help="https://HOST:PORT of the device, or the request address its owner shared "
        "(doorward+mqtts://…; quote it in the shell)",
    )
    p.add_argument(
        "--fingerprint",
        metavar="FP",
        help="its TLS SPKI fingerprint (with an https URL); write --fingerprint=FP, as base64url "
        "may begin with '-'",
    )
    p.add_argument("--device-id", metavar="ID", help="its device id (with an https URL)")
    add_via_option(p)
    p.add_argument("--camera", required=True, help="camera name, or * for every camera")
    p.add_argument("--start", required=True, type=parse_time, metavar="ISO")
    p.add_argument("--end", required=True, type=parse_time, metavar="ISO")
    p.add_argument("--category", required=True, choices=CATEGORIES)
    p.add_argument("--case", default="", metavar="REFERENCE")
    p.add_argument("--reason", required=True)
    p.add_argument("--legal-basis", required=True, choices=LEGAL_BASES)
    p.add_argument("--detail", default="")
    p.add_argument("--expires", type=parse_duration, default=parse_duration("3d"), metavar="3d")

    p = command("status", _status, "where a request stands")
    p.add_argument("request_id", metavar="REQUEST_ID")
    add_via_option(p)

    p = command("fetch", _fetch, "download a release, verify and decrypt it")
    p.add_argument("release_id", metavar="RELEASE_ID")
    p.add_argument("--out", type=Path, metavar="DIR", help="default: ./release-RELEASE_ID")
    p.add_argument("--device", metavar="ID", help="device id (when several are pinned)")
    add_via_option(p)
    _add_max_size(p)

    p = command("verify", _verify, "verify and decrypt a release bundle already on disk")
    p.add_argument("bundle", type=Path, metavar="BUNDLE.tar")
    p.add_argument("--out", type=Path, metavar="DIR", help="default: next to the bundle")
    p.add_argument(
        "--device-key",
        metavar="KEY",
        help="the device's Ed25519 key (base64url, from its owner) when this profile has not "
        "pinned the device; write --device-key=KEY, as base64url may begin with '-'",
    )
    _add_max_size(p)
    add_relay_group(commands, "requester")
    return group


_DEFAULT_MAX_SIZE = BundleLimits().max_bundle_bytes
_SIZE_RE = re.compile(r"^(\d{1,15})\s*([kmgt]?)(?:i?b)?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """A size such as ``2GiB``, ``500M`` or ``1048576`` (binary units), in bytes."""
    match = _SIZE_RE.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"expected a size such as 2GiB or 500MiB, got {text!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def _add_max_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-size",
        type=parse_size,
        default=_DEFAULT_MAX_SIZE,
        metavar="SIZE",
        help="refuse a bundle larger than this, and stop its download there (default 2GiB)",
    )


def _init(args: argparse.Namespace) -> int:
    profile = open_profile(args)
    try:
        identity = RequesterIdentity(
            name=args.name,
            organisation=args.organisation,
            kind=args.kind,
            jurisdiction=args.jurisdiction,
            contact=args.contact,
        )
    except ValueError as exc:
        raise CliError(f"requester identity refused: {exc}") from exc
    for name in _IDENTITY_FIELDS:
        found = unsafe_character(getattr(identity, name))
        if found is not None:
            raise CliError(
                f"requester identity refused: the {name} contains {found}; control and "
                "bidirectional-formatting characters are not allowed"
            )
    keys = KeyBundle.generate(args.recipient)
    profile.create(keys, {"identity": _identity_json(identity), "recipient_kind": args.recipient})
    return emit(
        args,
        {
            "profile": str(profile.directory),
            "key_id": keys.key_id,
            "recipient": str(keys.recipient),
        },
        [
            f"requester keys made in {profile.directory}",
            f"key id {keys.key_id}; releases will be encrypted to {str(keys.recipient)[:32]}…",
        ],
    )


def _ask(args: argparse.Namespace) -> int:
    profile = open_profile(args)
    keys = profile.keys()
    identity = _identity(profile)
    now = int(time.time())
    try:
        token = sign_request(
            keys.signing_key,
            str(keys.recipient),
            identity,
            camera=args.camera,
            window_start_s=int(args.start),
            window_end_s=int(args.end),
            category=args.category,
            case_reference=args.case,
            reason=args.reason,
            legal_basis=args.legal_basis,
            issued_at_s=now,
            expires_at_s=now + args.expires,
            nonce=secrets.token_hex(16),
            detail=args.detail,
        )
    except ValueError as exc:
        raise CliError(f"request not sent: {exc}") from exc
    device = _device_to_ask(args, profile)

    async def go() -> RequestInfo:
        async with connect(args, profile, device, keys.signing_key) as api:
            try:
                return await api.submit_request(token)
            except ApiError as exc:
                if exc.code != "policy_refused":
                    raise
                # The refusal is recorded on the device; its status names the rule.
                refused = await api.request_status(request_id_of(token))
                raise _Refused(refused, exc.detail) from exc

    try:
        info = run_async(go(), where=f"device {device.device_id} at {device.url or 'the relay'}")
    except _Refused as exc:
        profile.pin(device)
        profile.remember("requests", exc.info.request_id, device.device_id)
        raise CliError(f"{exc.detail} (rule {exc.info.rule})") from exc
    profile.pin(device)
    profile.remember("requests", info.request_id, device.device_id)
    return emit(
        args,
        _request_json(info),
        [
            f"request {info.request_id}: {info.status}; the owner decides by {iso(info.expires_s)}",
            f"check with: doorward requester status {info.request_id}",
        ],
    )


def _device_to_ask(args: argparse.Namespace, profile: Profile) -> PinnedDevice:
    """The device a request goes to: from its LAN URL, fingerprint and id, or from the request
    address (its signing key pinned from there; a LAN URL pinned earlier is kept)."""
    if not args.url.lower().startswith("doorward+"):
        if not args.fingerprint or not args.device_id:
            raise CliError(
                "with an https URL, give the device's --fingerprint=FP and --device-id ID (or "
                "ask with the request address its owner shared: doorward+mqtts://…)"
            )
        return PinnedDevice(device_id=args.device_id, fingerprint=args.fingerprint, url=args.url)
    from hub.relay.address import AddressError, RequestAddress

    try:
        address = RequestAddress.parse(args.url)
    except AddressError as exc:
        raise CliError(f"the request address is not usable: {exc}") from None
    if args.device_id is not None and args.device_id != address.device_id:
        raise CliError(
            f"--device-id {args.device_id} is not the device of the request address "
            f"({address.device_id})"
        )
    if args.fingerprint is not None and args.fingerprint != address.fingerprint:
        raise CliError("--fingerprint is not the TLS key of the request address's device")
    known = {d.device_id: d for d in profile.devices()}.get(address.device_id)
    lan_url = known.url if known is not None and known.fingerprint == address.fingerprint else ""
    return PinnedDevice(
        device_id=address.device_id,
        fingerprint=address.fingerprint,
        url=lan_url,
        signing_key=address.signing_key,
        relay_key_config=address.key_config,
        relay_url=address.relay_url,
    )


class _Refused(DoorwardError):
    def __init__(self, info: RequestInfo, detail: str) -> None:
        super().__init__(detail)
        self.info = info
        self.detail = detail


def _status(args: argparse.Namespace) -> int:
    profile = open_profile(args)
    keys = profile.keys()
    device = profile.device(profile.device_of("requests", args.request_id))

    async def go() -> RequestInfo:
        async with connect(args, profile, device, keys.signing_key) as api:
            return await api.request_status(args.request_id)

    info = run_async(go(), where=f"device {device.device_id} at {device.url or 'the relay'}")
    for release_id in info.release_ids:
        profile.remember("releases", release_id, device.device_id)
    line = f"request {info.request_id}: {info.status}"
    if info.rule:
        line += f" by rule {info.rule}"
    if info.reason:
        line += f" ({info.reason})"
    lines = [line, *(f"fetch with: doorward requester fetch {r}" for r in info.release_ids)]
    return emit(args, _request_json(info), lines)


def _fetch(args: argparse.Namespace) -> int:
    profile = open_profile(args)
    keys = profile.keys()
    device = profile.device(args.device or profile.device_of("releases", args.release_id))
    out: Path = args.out or Path(f"release-{args.release_id}")
    out.mkdir(parents=True, exist_ok=True)
    bundle = out / "release.tar"
    progress = Progress(f"release {args.release_id}")

    async def go() -> int:
        async with connect(args, profile, device, keys.signing_key) as api:
            with open(bundle, "wb") as f:  # noqa: ASYNC230 - chunked small writes
                writer = cast(IO[bytes], ProgressWriter(f, progress))
                return await api.fetch_release(args.release_id, writer, max_bytes=args.max_size)

    try:
        size = run_async(go(), where=f"device {device.device_id} at {device.url or 'the relay'}")
    except DownloadTooLarge as exc:
        bundle.unlink(missing_ok=True)
        raise CliError(
            f"device {device.device_id} sent more than {args.max_size} bytes for release "
            f"{args.release_id}; the download was stopped and removed (a real release that "
            "large needs a higher --max-size)"
        ) from exc
    finally:
        progress.close()
    # The device's TLS key is its Ed25519 identity key: the bundle must be signed by the key this
    # profile pinned, not merely carry the same (80-bit) device id.
    report = _open(
        bundle,
        keys,
        out,
        args.max_size,
        device_key=device.signing_key,
        device_fingerprint=device.fingerprint,
    )
    if report.device_id != device.device_id:
        raise CliError(
            f"the release was signed by device {report.device_id}, not {device.device_id} "
            "which the request went to: do not trust it"
        )
    if device.signing_key is None:
        profile.pin(dataclasses.replace(device, signing_key=load_ed25519_public(report.device_key)))
    return _report(args, report, bundle, size)


def _verify(args: argparse.Namespace) -> int:
    profile = open_profile(args)
    keys = profile.keys()
    if not args.bundle.is_file():
        raise CliError(f"no bundle at {args.bundle}")
    out: Path = args.out or args.bundle.with_suffix("")
    if args.device_key is not None:
        try:
            device_key = load_ed25519_public(args.device_key)
        except DoorwardError as exc:
            raise CliError(f"--device-key is not an Ed25519 key: {exc}") from exc
        report = _open(args.bundle, keys, out, args.max_size, device_key=device_key)
    else:
        device = _pinned_device_of(profile, args.bundle, args.max_size)
        report = _open(
            args.bundle,
            keys,
            out,
            args.max_size,
            device_key=device.signing_key,
            device_fingerprint=device.fingerprint,
        )
    return _report(args, report, args.bundle, args.bundle.stat().st_size)


def _pinned_device_of(profile: Profile, bundle: Path, max_size: int) -> PinnedDevice:
    try:
        device_id = bundle_device_id(bundle, BundleLimits(max_bundle_bytes=max_size))
    except BundleInvalid as exc:
        raise CliError(f"release bundle {bundle} failed verification: {exc}") from exc
    for device in profile.devices():
        if device.device_id == device_id:
            return device
    raise CliError(
        f"release bundle {bundle} says it comes from device {device_id}, which "
        f"{profile.directory} has not pinned, so nothing shows who signed it: pass "
        "--device-key=KEY with the device's Ed25519 key (ask its owner), or fetch releases "
        "with 'doorward requester fetch'"
    )


def _open(
    bundle: Path,
    keys: KeyBundle,
    out: Path,
    max_size: int,
    *,
    device_key: Ed25519PublicKey | None,
    device_fingerprint: str | None = None,
) -> VerificationReport:
    if device_key is None and device_fingerprint is None:
        raise CliError("refusing to verify a bundle against no pinned device key")
    try:
        return open_bundle(
            bundle,
            [keys.age_identity],
            out,
            requester_key_id=keys.key_id,
            device_key=device_key,
            device_fingerprint=device_fingerprint,
            limits=BundleLimits(max_bundle_bytes=max_size),
        )
    except BundleInvalid as exc:
        raise CliError(f"release bundle {bundle} failed verification: {exc}") from exc


def _report(args: argparse.Namespace, report: VerificationReport, bundle: Path, size: int) -> int:
    out = Path(report.video).parent if report.video else bundle.parent
    result = {
        **report.to_json(),
        "bundle": str(bundle),
        "bytes": size,
        "report_json": str(out / "report.json"),
        "report_txt": str(out / "report.txt"),
    }
    decrypted = sum(1 for s in report.segments if s.decrypted)
    lines = [
        f"release {report.release_id}: {report.verdict}; "
        f"{decrypted}/{len(report.segments)} segments decrypted",
        *(f"  checked: {c}" for c in report.checks),
        f"video: {report.video or 'none written'}",
        f"report: {out / 'report.txt'}",
    ]
    emit(args, result, lines)
    return 0 if report.ok else 1


def _identity(profile: Profile) -> RequesterIdentity:
    data = profile.info().get("identity")
    if not isinstance(data, dict):
        raise CliError(f"{profile.directory} has no requester identity; run 'requester init'")
    try:
        return RequesterIdentity(**{k: str(data.get(k, "")) for k in _IDENTITY_FIELDS})
    except ValueError as exc:
        raise CliError(f"requester identity in {profile.directory} is invalid: {exc}") from exc


_IDENTITY_FIELDS = ("name", "organisation", "kind", "jurisdiction", "contact")


def _identity_json(identity: RequesterIdentity) -> dict[str, str]:
    return {k: getattr(identity, k) for k in _IDENTITY_FIELDS}


def _request_json(info: RequestInfo) -> dict[str, Any]:
    return {
        "request_id": info.request_id,
        "status": info.status,
        "rule": info.rule,
        "reason": info.reason,
        "expires": info.expires_s,
        "release_ids": list(info.release_ids),
    }


main = entry_point(add_parser, "requester")

if __name__ == "__main__":
    sys.exit(main())
