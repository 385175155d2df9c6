"""``doorward owner audit`` and its alias ``doorward audit verify``: check the device's audit log.

The profile keeps the last checkpoint it accepted for each device, and the Merkle frontier of the
entries under it. Each audit reads only the entries appended since (in pages), checks that they
extend the stored tree to the device's new signed checkpoint, and checks that checkpoint against
every other owner's cosigned one; then it cosigns the checkpoint for the other owners' phones
(``hub.client.audit``). A device that rewrites, drops or forks history, or shows owners different
logs, is caught. ``doorward owner approve`` runs the same audit before it approves, so that the
clip seals it checks against (``AuditVerifier.sealed``) are current.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from consent.audit import audit_origin
from consent.audit_verify import AuditVerifier
from hub.cli.common import (
    CliError,
    add_common,
    add_device_option,
    command_handler,
    connect,
    emit,
    entry_point,
    open_profile,
)
from hub.cli.common import run_async as _run_async
from hub.client.audit import AuditReport, check_audit
from hub.client.profile import PinnedDevice, Profile

__all__ = ["add_parser", "audit_verifier", "main", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``audit`` command group (``audit verify``) to ``subparsers``."""
    group: argparse.ArgumentParser = subparsers.add_parser(
        "audit", help="verify a device's audit log against the last checkpoint you accepted"
    )
    commands = group.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify: argparse.ArgumentParser = commands.add_parser(
        "verify", help="same as 'doorward owner audit'"
    )
    add_common(verify, "owner")
    add_device_option(verify)
    verify.set_defaults(handler=command_handler(run))
    return group


def run(args: argparse.Namespace) -> int:
    """Read the entries new since the stored checkpoint, verify them and the other owners'
    cosignatures, store the new checkpoint, cosign it, and print the new entries."""
    profile = open_profile(args, "owner")
    keys = profile.keys()
    device = profile.device(args.device)
    verifier = audit_verifier(profile, device)
    state = profile.checkpoint_path(device.device_id)

    async def audit() -> AuditReport:
        async with connect(args, profile, device, keys.signing_key) as api:
            return await check_audit(
                api, verifier, signing_key=keys.signing_key, now=int(time.time())
            )

    report = _run_async(audit(), where=f"device {device.device_id}")
    bodies = [json.loads(leaf) for leaf in report.leaves]
    cosigners = [
        {"key_id": c.key_id, "name": c.name, "size": c.size, "time": c.time_s}
        for c in report.cosigners
    ]
    lines = [
        f"audit log of device {device.device_id} verified: {report.size} entries "
        f"(was {report.previous_size} at the last check; read {len(bodies)}); checkpoint stored "
        f"in {state} and cosigned",
        *(_line(b) for b in bodies),
        f"cosigners ({len(cosigners)} owners):",
        *(_cosigner_line(c, report.size) for c in cosigners),
    ]
    return emit(
        args,
        {
            "device_id": device.device_id,
            "verified": True,
            "size": report.size,
            "previous_size": report.previous_size,
            "first_index": report.first_index,
            "fetched": len(bodies),
            "checkpoint": str(state),
            "entries": bodies,
            "cosigners": cosigners,
        },
        lines,
    )


def audit_verifier(profile: Profile, device: PinnedDevice) -> AuditVerifier:
    """The profile's verifier of ``device``'s audit log: its last checkpoint (re-verified), the
    Merkle frontier and the clip seals under it."""
    if device.signing_key is None:
        raise CliError(f"device {device.device_id}'s signing key is not pinned; pair again")
    state = profile.checkpoint_path(device.device_id)
    return AuditVerifier(device.signing_key, audit_origin(device.signing_key), state_path=state)


def _cosigner_line(cosigner: dict[str, Any], size: int) -> str:
    who = f"  {cosigner['name']} ({cosigner['key_id']})"
    if cosigner["size"] is None:
        return f"{who}: has not cosigned this log yet"
    when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(cosigner["time"]))
    behind = "" if cosigner["size"] == size else f", {size - cosigner['size']} entries ago"
    return f"{who}: cosigned size {cosigner['size']} at {when}{behind}"


def _line(body: dict[str, Any]) -> str:
    fields = ", ".join(
        f"{k}={v}" for k, v in sorted(body.items()) if k not in ("kind", "index", "time")
    )
    return f"  #{body.get('index')}  {body.get('time')}  {body.get('kind')}  {fields}"


main = entry_point(add_parser, "audit")

if __name__ == "__main__":
    sys.exit(main())
