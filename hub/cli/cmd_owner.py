"""``doorward owner …``: the homeowner's phone on the command line.

Keys and pinned devices live in a profile (``hub.client.profile``). Every call to a device goes over TLS
pinned to the fingerprint learned at pairing, signed with the owner's key; segments are decrypted
and re-headed here, never on the device. ``python -m hub.cli.cmd_owner ARGS`` runs the group alone.
"""

from __future__ import annotations

import argparse
import getpass
import io
import secrets
import sys
import time
from pathlib import Path
from typing import IO, Any, cast

from consent import owner as phone
from consent._policy import Policy
from consent.policy_doc import sign_policy
from consent.requests import verify_request
from crypto import age
from crypto.errors import DoorwardError
from crypto.keys import KeyBundle, write_secret_file
from crypto.setup_code import PairingURI, SetupCode
from hub.cli import cmd_owner_audit as _cli_audit
from hub.cli.cmd_owner_footage import ApiFootage
from hub.cli.common import (
    CliError,
    add_common,
    client_for,
    command_handler,
    emit,
    entry_point,
    iso,
    open_profile,
    parse_duration,
    parse_time,
    run_async,
)
from hub.cli.progress import Progress, ProgressWriter
from hub.client.api import DoorwardClient, RequestInfo, pair
from hub.client.profile import PinnedDevice, Profile
from hub.wire.discovery import browse

__all__ = ["add_parser", "main"]

_DISCOVER_S = 3.0


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

    p = command("clips", _clips, "list recorded clips")
    _device_arg(p)
    p.add_argument("--camera")
    p.add_argument("--since", type=parse_time, metavar="TIME")
    p.add_argument("--until", type=parse_time, metavar="TIME")
    p.add_argument("--limit", type=int, default=50)

    p = command("view", _view, "download a clip, decrypt it here and join it into one video")
    _device_arg(p)
    p.add_argument("clip_id", metavar="CLIP_ID")
    p.add_argument("--out", type=Path, metavar="FILE", help="CLIP_ID.ts by default; .mp4 remuxes")

    p = command("requests", _requests, "list footage requests")
    _device_arg(p)
    p.add_argument("--pending", action="store_true", help="only those awaiting a decision")

    p = command("approve", _approve, "release segments to a requester (cannot be unsent)")
    _device_arg(p)
    p.add_argument("request_id", metavar="REQUEST_ID")
    chosen = p.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--segments", metavar="ID,ID", help="segment ids to release")
    chosen.add_argument("--all", action="store_true", help="every segment in the window")
    p.add_argument("--expires", type=parse_duration, default=parse_duration("7d"), metavar="7d")
    p.add_argument("--max-downloads", type=int, default=1, metavar="N")
    p.add_argument(
        "--disclose", action="append", default=[], metavar="FIELD=VALUE", help="(repeat)"
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    p = command("decline", _decline, "refuse a request, with a reason the requester sees")
    _device_arg(p)
    p.add_argument("request_id", metavar="REQUEST_ID")
    p.add_argument("--reason", required=True)

    p = command("revoke", _revoke, "withdraw a release that was not downloaded yet")
    _device_arg(p)
    p.add_argument("release_id", metavar="RELEASE_ID")

    p = command("policy", _policy, "show the device's policy or install one signed by you")
    _device_arg(p)
    p.add_argument("action", nargs="?", choices=("show", "set"), default="show")
    p.add_argument("file", nargs="?", type=Path, metavar="FILE.json")

    p = command("owners", _owners, "list, remove or approve owners")
    _device_arg(p)
    p.add_argument("action", nargs="?", choices=("list", "remove", "approve"), default="list")
    p.add_argument(
        "key_id",
        nargs="?",
        metavar="KEY_ID",
        help="key ids are base64url: write -- before one that begins with '-'",
    )

    p = command("audit", _cli_audit.run, "verify the device's audit log and print it")
    _device_arg(p)

    p = command("export-identity", _export_identity, "write the age identity file (0600)")
    p.add_argument("--out", type=Path, default=Path("doorward-owner.age.key"), metavar="FILE")

    from hub.cli.cmd_owner_live import (
        add_live_commands,  # live view pulls in aiortc: only when wired
    )

    add_live_commands(commands)
    return group


def _device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", metavar="ID", help="device id (when several are paired)")


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
    keys = profile.keys()
    name = str(profile.info().get("name", "owner"))
    uri = _pairing_uri(args)
    url = args.url or _url_of(uri)
    device_keys = run_async(pair(url, uri, keys, name=name), where=f"the device at {url}")
    device = PinnedDevice(
        device_id=device_keys.device_id,
        fingerprint=device_keys.tls_fingerprint,
        url=url,
        signing_key=device_keys.signing_key,
    )
    profile.pin(device)
    return emit(
        args,
        {"device_id": device.device_id, "fingerprint": device.fingerprint, "url": url},
        [
            f"paired with device {device.device_id} at {url}",
            f"pinned its TLS key {device.fingerprint}; clips recorded from now on are "
            "encrypted to your key",
        ],
    )


def _pairing_uri(args: argparse.Namespace) -> PairingURI:
    text = _setup_text(args.uri).strip()
    if not text:
        raise CliError(
            "no setup URI or code was given; type the one the doorbell printed, or pipe it in: "
            "doorward owner pair - < FILE"
        )
    if text.startswith("doorward:"):
        return PairingURI.parse(text)
    code = SetupCode.parse(text)
    # A bare code: the device, its address and its TLS pin come from zeroconf.
    found = [d for d in run_async(browse(_DISCOVER_S), where="the LAN") if d.pairing == "open"]
    if len(found) != 1:
        raise CliError(
            f"{len(found)} devices are open for pairing on the LAN; "
            "pass the pairing URI (doorward://pair?…) instead of the code"
        )
    device = found[0]
    host = device.addresses[0] if device.addresses else None
    return PairingURI(
        device.device_id, code, device.fingerprint, host, device.port if host else None
    )


def _setup_text(arg: str) -> str:
    """The setup URI or code: from the command line, or (``-``) from the terminal without echo or
    one line of standard input, so that it stays out of the process list and the shell history."""
    if arg != "-":
        return arg
    if sys.stdin.isatty():
        return getpass.getpass("setup URI or code (not shown): ")
    return sys.stdin.readline()


def _url_of(uri: PairingURI) -> str:
    if uri.host is None:
        raise CliError("this pairing URI has no address; pass --url https://HOST:PORT")
    host = f"[{uri.host}]" if ":" in uri.host else uri.host
    return f"https://{host}:{uri.port}"


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


# -- clips --------------------------------------------------------------------------------------


class _Session:
    """A profile's keys, its pinned device and a client for it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.profile: Profile = open_profile(args)
        self.keys = self.profile.keys()
        self.device = self.profile.device(args.device)
        self.where = f"device {self.device.device_id} at {self.device.url}"

    def client(self) -> DoorwardClient:
        return client_for(self.device, self.keys.signing_key)


def _clips(args: argparse.Namespace) -> int:
    s = _Session(args)

    async def fetch() -> list[Any]:
        async with s.client() as api:
            page = await api.clips(
                camera=args.camera, start_s=args.since, end_s=args.until, limit=args.limit
            )
            return list(page.clips)

    clips = run_async(fetch(), where=s.where)
    rows = [
        {
            "clip_id": c.clip_id,
            "camera": c.camera,
            "start": c.start_s,
            "end": c.end_s,
            "segments": c.segment_count,
            "bytes": c.bytes,
            "finished": c.finished,
        }
        for c in clips
    ]
    lines = [
        f"{c.clip_id}  {c.camera}  {iso(c.start_s)} → {iso(c.end_s)}  {c.segment_count} segments"
        f"  {c.bytes} bytes{'' if c.finished else '  (recording)'}"
        for c in clips
    ] or ["no clips"]
    return emit(args, {"clips": rows}, lines)


def _view(args: argparse.Namespace) -> int:
    s = _Session(args)
    out: Path = args.out or Path(f"{args.clip_id}.ts")
    identities = [s.keys.age_identity]

    progress = Progress(f"clip {args.clip_id}")

    async def fetch() -> tuple[int, bytes]:
        joined = io.BytesIO()
        async with s.client() as api:
            clip = await api.clip(args.clip_id)
            progress.total = clip.bytes
            for segment in clip.segments:
                buffer = io.BytesIO()
                writer = cast(IO[bytes], ProgressWriter(buffer, progress))
                await api.download_segment(segment.segment_id, writer)
                joined.write(age.decrypt_bytes(identities, buffer.getvalue()))
            return len(clip.segments), joined.getvalue()

    try:
        count, video = run_async(fetch(), where=s.where)
    finally:
        progress.close()
    if count == 0:
        raise CliError(f"clip {args.clip_id} has no segments yet")
    if out.suffix.lower() == ".mp4":
        _remux_to_mp4(video, out)
    else:
        out.write_bytes(video)
    return emit(
        args,
        {"clip_id": args.clip_id, "segments": count, "video": str(out)},
        [f"clip {args.clip_id}: {count} segments decrypted here and written to {out}"],
    )


def _remux_to_mp4(ts: bytes, out: Path) -> None:
    import av

    with av.open(io.BytesIO(ts), "r", format="mpegts") as src, av.open(str(out), "w") as dst:
        stream = src.streams.video[0]
        target = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = target
            dst.mux(packet)


# -- requests and decisions -----------------------------------------------------------------------


def _requests(args: argparse.Namespace) -> int:
    s = _Session(args)

    async def fetch() -> list[RequestInfo]:
        async with s.client() as api:
            return await api.requests("pending" if args.pending else None)

    requests = run_async(fetch(), where=s.where)
    now = int(time.time())
    rows, lines = [], []
    for r in requests:
        row: dict[str, Any] = {
            "request_id": r.request_id,
            "status": r.status,
            "rule": r.rule,
            "reason": r.reason,
            "expires": r.expires_s,
            "requester_key_id": r.requester_key_id,
        }
        line = f"{r.request_id}  {r.status}"
        detail = _describe(r, now)
        if detail is not None:
            row.update(detail)
            line += (
                f"  {detail['organisation'] or detail['name']} ({detail['kind']})"
                f"  {detail['category']}  camera {detail['camera']}"
                f"  {iso(detail['window'][0])} → {iso(detail['window'][1])}"
                f"  reason: {detail['request_reason']}"
            )
        if r.rule:
            line += f"  refused by rule {r.rule}"
        rows.append(row)
        lines.append(line)
    return emit(args, {"requests": rows}, lines or ["no requests"])


def _describe(r: RequestInfo, now: int) -> dict[str, Any] | None:
    if r.token is None:
        return None
    try:
        request = verify_request(r.token, min(now, r.expires_s - 1))
    except (DoorwardError, ValueError):
        return None
    who = request.identity
    return {
        "name": who.name,
        "organisation": who.organisation,
        "kind": who.kind,
        "jurisdiction": who.jurisdiction,
        "contact": who.contact,
        "camera": request.camera,
        "window": [request.window_start_s, request.window_end_s],
        "category": request.category,
        "case_reference": request.case_reference,
        "request_reason": request.reason,
        "legal_basis": request.legal_basis,
    }


def _approve(args: argparse.Namespace) -> int:
    s = _Session(args)
    disclosures = _disclosures(args.disclose)
    if args.max_downloads < 1:
        raise CliError(f"--max-downloads must be at least 1, got {args.max_downloads}")
    wanted = None if args.all else [x for x in args.segments.split(",") if x]
    now = int(time.time())

    async def prepare() -> tuple[Any, ApiFootage]:
        async with s.client() as api:
            info = await api.request(args.request_id)
            if info.status != "pending":
                raise CliError(f"request {args.request_id} is {info.status}, not pending")
            if info.token is None:
                raise CliError(f"the device did not send request {args.request_id}'s token")
            request = verify_request(info.token, now)
            footage = await ApiFootage.load(api, request, wanted)
            return request, footage

    request, footage = run_async(prepare(), where=s.where)
    segments = footage.chosen()
    who = request.identity
    print(
        f"Releasing {len(segments)} segment(s) to {who.name} ({who.organisation or who.kind}), "
        f"up to {args.max_downloads} download(s). Releases cannot be unsent: once downloaded, "
        "the requester keeps the video.",
        file=sys.stderr,
    )
    if not args.yes:
        print("Type 'yes' to approve: ", end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline()
        if not sys.stdin.isatty():
            print(file=sys.stderr)  # a terminal echoed the newline; a pipe did not
        if answer.strip().lower() not in ("y", "yes"):
            raise CliError("approval cancelled; nothing was released")
    approval = phone.approve(
        s.keys.signing_key,
        [s.keys.age_identity],
        request,
        segments,
        footage,
        device_id=s.device.device_id,
        token_id=secrets.token_hex(8),
        now=now,
        expires_at_s=now + args.expires,
        max_downloads=args.max_downloads,
        disclosures=disclosures or None,
    )

    async def post() -> Any:
        async with s.client() as api:
            return await api.consent(args.request_id, approval)

    release = run_async(post(), where=s.where)
    return emit(
        args,
        {
            "release_id": release.release_id,
            "request_id": release.request_id,
            "segment_ids": list(release.segment_ids),
            "expires": release.expires_s,
            "max_downloads": release.max_downloads,
        },
        [
            f"release {release.release_id}: {len(release.segment_ids)} segment(s) re-headed to "
            f"the requester's key, until {iso(release.expires_s)}",
        ],
    )


def _disclosures(items: list[str]) -> dict[str, str]:
    result = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CliError(f"--disclose must be FIELD=VALUE, got {item[:40]!r}")
        result[name] = value
    return result


def _decline(args: argparse.Namespace) -> int:
    s = _Session(args)

    async def go() -> RequestInfo:
        async with s.client() as api:
            info = await api.request(args.request_id)
            if info.token is None:
                raise CliError(f"the device did not send request {args.request_id}'s token")
            now = int(time.time())
            request = verify_request(info.token, now)
            token = phone.decline(
                s.keys.signing_key,
                request,
                args.reason,
                device_id=s.device.device_id,
                token_id=secrets.token_hex(8),
                now=now,
            )
            return await api.decline(args.request_id, token)

    info = run_async(go(), where=s.where)
    return emit(
        args,
        {"request_id": info.request_id, "status": info.status, "reason": info.reason},
        [f"request {info.request_id} {info.status}: {info.reason}"],
    )


def _revoke(args: argparse.Namespace) -> int:
    s = _Session(args)
    token = phone.revoke(
        s.keys.signing_key,
        args.release_id,
        device_id=s.device.device_id,
        token_id=secrets.token_hex(8),
        now=int(time.time()),
    )

    async def go() -> Any:
        async with s.client() as api:
            return await api.revoke(args.release_id, token)

    release = run_async(go(), where=s.where)
    return emit(
        args,
        {"release_id": release.release_id, "revoked": release.revoked},
        [f"release {release.release_id} revoked; it can no longer be downloaded"],
    )


# -- policy and owners ----------------------------------------------------------------------------


def _policy(args: argparse.Namespace) -> int:
    s = _Session(args)
    document = None
    if args.action == "set":
        if args.file is None:
            raise CliError("policy set needs a FILE.json holding the policy")
        try:
            policy = Policy.from_json(_read_json_file(args.file))
        except ValueError as exc:
            raise CliError(f"{args.file} is not a valid policy: {exc}") from exc
        document = sign_policy(
            policy, s.keys.signing_key, device_id=s.device.device_id, issued_at_s=int(time.time())
        )

    async def go() -> dict[str, Any]:
        async with s.client() as api:
            return await (api.set_policy(document) if document else api.policy())

    policy_json = run_async(go(), where=s.where)
    import json

    verb = "installed" if document else "in force"
    return emit(
        args, {"policy": policy_json}, [f"policy {verb}:", json.dumps(policy_json, indent=2)]
    )


def _read_json_file(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CliError(f"{path} is not valid JSON: {exc}") from exc


def _owners(args: argparse.Namespace) -> int:
    s = _Session(args)
    if args.action != "list" and not args.key_id:
        raise CliError(f"owners {args.action} needs the owner's KEY_ID")

    async def go() -> list[Any]:
        async with s.client() as api:
            if args.action == "remove":
                await api.remove_owner(args.key_id)
            elif args.action == "approve":
                await api.approve_owner(args.key_id)
            return await api.owners()

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


main = entry_point(add_parser, "owner")

if __name__ == "__main__":
    sys.exit(main())
