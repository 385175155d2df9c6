"""``doorward owner`` decisions: requests, approve, decline, revoke, policy, audit.

Approving re-heads the chosen segments' file keys here, on the owner's machine: the device never
sees an owner key. It audits the device's log first (as ``doorward owner audit`` does), so that
each clip's manifest can be checked against the one the device sealed when the clip finished.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from consent.text import escape
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
from hub.cli.owner_ops import (
    ApprovalTerms,
    PreparedApproval,
    build_approval,
    decline_request,
    describe_request,
    prepare_approval,
    revoke_release,
    signed_policy,
)
from hub.client import RequestInfo

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
        detail = describe_request(r, now)
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


def _approve(args: argparse.Namespace) -> int:
    # The chosen segments' age files are downloaded here for approve to check, then removed.
    with tempfile.TemporaryDirectory(prefix="doorward-approve-") as workdir:
        return _approve_with(args, Path(workdir))


def _approve_with(args: argparse.Namespace, workdir: Path) -> int:
    s = OwnerSession(args)
    if args.max_downloads < 1:
        raise CliError(f"--max-downloads must be at least 1, got {args.max_downloads}")
    terms = ApprovalTerms(args.expires, args.max_downloads, _disclosures(args.disclose) or None)
    wanted = None if args.all else [x for x in args.segments.split(",") if x]
    now = int(time.time())

    async def prepare() -> PreparedApproval:
        # Approving checks the chosen segments' files, which are downloaded (not over the relay).
        async with s.client() as api:
            return await prepare_approval(
                api, s.profile, s.device, s.keys, args.request_id, wanted, workdir=workdir, now=now
            )

    prepared = run_async(prepare(), where=s.where)
    segments = prepared.footage.chosen()
    who = prepared.request.identity
    print(
        escape(
            f"Releasing {len(segments)} segment(s) to {who.name} ({who.organisation or who.kind}),"
            f" up to {terms.max_downloads} download(s). Releases cannot be unsent: once "
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
    approval = build_approval(prepared, s.device, s.keys, terms, now=now)

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
            return await decline_request(
                api, s.device, s.keys, args.request_id, args.reason, now=int(time.time())
            )

    info = run_async(go(), where=s.where)
    return emit(
        args,
        {"request_id": info.request_id, "status": info.status, "reason": info.reason},
        [f"request {info.request_id} {info.status}: {info.reason}"],
    )


def _revoke(args: argparse.Namespace) -> int:
    s = OwnerSession(args)

    async def go() -> Any:
        async with s.client() as api:
            return await revoke_release(
                api, s.device, s.keys, args.release_id, now=int(time.time())
            )

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
        document = signed_policy(
            _read_json_file(args.file),
            s.keys,
            s.device.device_id,
            now=int(time.time()),
            source=str(args.file),
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
