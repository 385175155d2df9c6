"""``doorward owner status``: the doorbell at a glance (cameras, storage, owners, off-site backup)."""

from __future__ import annotations

import argparse
from typing import Any

from hub.cli.common import Command, OwnerSession, add_device_option, emit, iso, run_async

__all__ = ["add_commands", "status_lines"]


def add_commands(command: Command) -> None:
    """Add ``status`` to the ``owner`` group."""
    p = command("status", _status, "the doorbell's health, recording counters and backup state")
    add_device_option(p)


def _status(args: argparse.Namespace) -> int:
    s = OwnerSession(args)

    async def fetch() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with s.client() as api:
            return await api.health(), await api.metrics(), await api.backup()

    health, metrics, backup = run_async(fetch(), where=s.where)
    result = {"health": health, "metrics": metrics, "backup": backup}
    return emit(args, result, status_lines(health, metrics, backup))


def status_lines(
    health: dict[str, Any], metrics: dict[str, Any], backup: dict[str, Any]
) -> list[str]:
    """What ``status`` prints: one line per subject, the backup's error in full."""
    lines = [
        f"{health.get('name', '?')} ({health.get('device_id', '?')}): {health.get('status')}, "
        f"up {_duration(float(health.get('uptime_s', 0)))}",
        f"cameras: {health.get('cameras')}  owners: {health.get('owners')}",
        f"recorded: {metrics.get('clips', 0)} clips, {metrics.get('bytes', 0)} bytes this run; "
        f"stored {metrics.get('stored_bytes', 0)} bytes; "
        f"{metrics.get('dropped_frames', 0)} dropped frames",
    ]
    if not backup.get("enabled"):
        lines.append("backup: off (add a [backup] section to the serve config)")
        return lines
    state = "failing" if _failing(backup) else "ok"
    lines.append(f"backup: {state} → {backup.get('target')}")
    lines.append(
        f"  queue: {backup.get('queued_objects', 0)} objects, {backup.get('queued_bytes', 0)} "
        f"bytes, lag {float(backup.get('lag_s', 0)):.1f} s; uploaded "
        f"{backup.get('uploaded_objects', 0)} objects ({backup.get('uploaded_bytes', 0)} bytes); "
        f"skipped {backup.get('skipped_objects', 0)}"
    )
    lines.append(f"  last success: {iso(backup.get('last_success'))}")
    if backup.get("last_error"):
        lines.append(f"  last error at {iso(backup.get('last_error_at'))}: {backup['last_error']}")
    releases = backup.get("releases")
    if isinstance(releases, dict) and (releases.get("pending") or releases.get("last_error")):
        lines.append(
            f"  release bundles waiting: {releases.get('pending', 0)}"
            + (f"; last error: {releases['last_error']}" if releases.get("last_error") else "")
        )
    return lines


def _failing(backup: dict[str, Any]) -> bool:
    error_at = backup.get("last_error_at")
    success = backup.get("last_success")
    return error_at is not None and (success is None or error_at > success)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
