"""``doorward owner`` decisions: requests, approve, decline, revoke, policy, audit.

Approving re-heads the chosen segments' file keys here, on the owner's machine: the device never
sees an owner key. It audits the device's log first (as ``doorward owner audit`` does), so that
each clip's manifest can be checked against the one the device sealed when the clip finished.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import consent.owner
from consent import Policy
from consent.policy_doc import sign_policy
from consent.requests import verify_request
from consent.text import escape
from crypto.errors import DoorwardError
from hub.cli import cmd_audit as _cli_audit
from hub.cli.common import (
    CliError,
    Command,
    OwnerSession,
    add_device_option,
    emit,
    iso,
    parse_duration,
    run_async,
)
from hub.cli.request_footage import ApiFootage
from hub.client import RequestInfo
from hub.client.audit import check_audit

__all__ = ["add_commands"]


def add_commands(command: Command) -> None:
    """Add ``requests``, ``approve``, ``decline``, ``revoke``, ``policy``, ``audit`` to the ``owner`` group."""
    p = command("requests", _requests, "list footage requests")
    add_device_option(p)
    p.add_argument("--pending", action="store_true", help="only those awaiting a decision")

    p = command("approve", _approve, "release segments to a requester (cannot be unsent)")
    add_device_option(p)
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
    add_device_option(p)
    p.add_argument("request_id", metavar="REQUEST_ID")
    p.add_argument("--reason", required=True)

    p = command("revoke", _revoke, "withdraw a release that was not downloaded yet")
    add_device_option(p)
    p.add_argument("release_id", metavar="RELEASE_ID")

    p = command("policy", _policy, "show the device's policy or install one signed by you")
    add_device_option(p)
    p.add_argument("action", nargs="?", choices=("show", "set"), default="show")
    p.add_argument("file", nargs="?", type=Path, metavar="FILE.json")

    p = command("audit", _cli_audit.run, "verify the device's audit log and print it")
    add_device_option(p)


# -- requests and decisions -----------------------------------------------------------------------


def _requests(args: argparse.Namespace) -> int:
    s = OwnerSession(args)

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
        request = verify_request(r.token, min(now, r.expires_s - 1), strict_text=False)
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
    # The chosen segments' age files are downloaded here for approve to check, then removed.
    with tempfile.TemporaryDirectory(prefix="doorward-approve-") as workdir:
        return _approve_with(args, Path(workdir))


def _approve_with(args: argparse.Namespace, workdir: Path) -> int:
    s = OwnerSession(args)
    disclosures = _disclosures(args.disclose)
    if args.max_downloads < 1:
        raise CliError(f"--max-downloads must be at least 1, got {args.max_downloads}")
    wanted = None if args.all else [x for x in args.segments.split(",") if x]
    device_key = s.device.signing_key
    if device_key is None:
        raise CliError(
            f"this profile has no signing key pinned for device {s.device.device_id}, so the "
            "footage it serves cannot be checked; pair with the device again"
        )
    now = int(time.time())
    verifier = _cli_audit.audit_verifier(s.profile, s.device)

    async def prepare() -> tuple[Any, ApiFootage]:
        # Approving checks the chosen segments' files, which are downloaded (not over the relay).
        async with s.client() as api:
            info = await api.request(args.request_id)
            if info.status != "pending":
                raise CliError(f"request {args.request_id} is {info.status}, not pending")
            if info.token is None:
                raise CliError(f"the device did not send request {args.request_id}'s token")
            request = verify_request(info.token, now, strict_text=False)
            footage = await ApiFootage.load(api, request, wanted, workdir=workdir)
            # After the footage: a clip that finished meanwhile is sealed by now.
            await check_audit(api, verifier, signing_key=s.keys.signing_key, now=now)
            return request, footage

    request, footage = run_async(prepare(), where=s.where)
    segments = footage.chosen()
    who = request.identity
    print(
        escape(
            f"Releasing {len(segments)} segment(s) to {who.name} ({who.organisation or who.kind}),"
            f" up to {args.max_downloads} download(s). Releases cannot be unsent: once "
            "downloaded, the requester keeps the video."
        ),
        file=sys.stderr,
    )
    if not args.yes:
        print("Type 'yes' to approve: ", end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline()
        if not sys.stdin.isatty():
            print(file=sys.stderr)  # a terminal echoed the newline; a pipe did not
        if answer.strip().lower() not in ("y", "yes"):
            raise CliError("approval cancelled; nothing was released")
    approval = consent.owner.approve(
        s.keys.signing_key,
        [s.keys.age_identity],
        request,
        segments,
        footage,
        device_id=s.device.device_id,
        device_key=device_key,
        sealed=verifier.sealed({segment.clip_id for segment in segments}),
        token_id=secrets.token_hex(8),
        now=now,
        expires_at_s=now + args.expires,
        max_downloads=args.max_downloads,
        disclosures=disclosures or None,
        checkpoint=verifier.last_checkpoint,
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
    s = OwnerSession(args)

    async def go() -> RequestInfo:
        async with s.client() as api:
            info = await api.request(args.request_id)
            if info.token is None:
                raise CliError(f"the device did not send request {args.request_id}'s token")
            now = int(time.time())
            request = verify_request(info.token, now, strict_text=False)
            token = consent.owner.decline(
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
    s = OwnerSession(args)
    token = consent.owner.revoke(
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
    s = OwnerSession(args)
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
