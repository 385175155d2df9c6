"""``doorward owner audit`` and its alias ``doorward audit verify``: check the device's audit log.

The profile keeps the last checkpoint it accepted for each device. A new checkpoint is accepted
only with a consistency proof from that one, and the entries must hash to it, so a device that
rewrites, drops or forks history it has already shown is caught (``consent.audit_verify``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from consent.audit import audit_origin
from consent.audit_verify import AuditVerifier
from hub.cli.common import (
    CliError,
    add_common,
    client_for,
    command_handler,
    emit,
    entry_point,
    open_profile,
)
from hub.cli.common import run_async as _run_async

__all__ = ["add_parser", "main", "run"]


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
    verify.add_argument("--device", metavar="ID", help="device id (when several are paired)")
    verify.set_defaults(handler=command_handler(run))
    return group


def run(args: argparse.Namespace) -> int:
    """Fetch the checkpoint, a consistency proof from the stored one and every entry; verify
    them, store the new checkpoint and print the entries."""
    profile = open_profile(args, "owner")
    keys = profile.keys()
    device = profile.device(args.device)
    if device.signing_key is None:
        raise CliError(f"device {device.device_id}'s signing key is not pinned; pair again")
    state = profile.checkpoint_path(device.device_id)
    verifier = AuditVerifier(device.signing_key, audit_origin(device.signing_key), state_path=state)
    old_size = verifier.last_checkpoint.size if verifier.last_checkpoint else 0

    async def fetch() -> tuple[str, list[bytes], tuple[bytes, ...]]:
        async with client_for(device, keys.signing_key) as api:
            checkpoint = await api.audit_checkpoint()
            size = _claimed_size(checkpoint)
            proof = []
            if 0 < old_size < size:
                proof = await api.consistency_proof(old_size, size)
            entries = await api.audit_entries(0, size)
            return checkpoint, proof, entries.leaves

    checkpoint, proof, leaves = _run_async(fetch(), where=f"device {device.device_id}")
    verifier.verify_entries(leaves, checkpoint)
    accepted = verifier.verify_update(checkpoint, proof)
    bodies = [json.loads(leaf) for leaf in leaves]
    lines = [
        f"audit log of device {device.device_id} verified: {accepted.size} entries "
        f"(was {old_size} at the last check); checkpoint stored in {state}",
        *(_line(b) for b in bodies),
    ]
    return emit(
        args,
        {
            "device_id": device.device_id,
            "verified": True,
            "size": accepted.size,
            "previous_size": old_size,
            "checkpoint": str(state),
            "entries": bodies,
        },
        lines,
    )


def _claimed_size(checkpoint: str) -> int:
    """The tree size a checkpoint note claims (line 2); the verifier checks it afterwards."""
    lines = checkpoint.split("\n")
    if len(lines) < 3 or not lines[1].isdigit():
        raise CliError("the device sent a checkpoint that is not a signed note")
    return int(lines[1])


def _line(body: dict[str, Any]) -> str:
    fields = ", ".join(
        f"{k}={v}" for k, v in sorted(body.items()) if k not in ("kind", "index", "time")
    )
    return f"  #{body.get('index')}  {body.get('time')}  {body.get('kind')}  {fields}"


main = entry_point(add_parser, "audit")

if __name__ == "__main__":
    sys.exit(main())
