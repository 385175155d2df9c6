"""The device's uploader as the off-site tests build it: on a device's store, log and owners."""

from __future__ import annotations

from typing import Any

from hub.server.backup import OffsiteBackup
from hub.server.config import BackupConfig
from hub.server.state import Device


def uploader(device: Device, config: BackupConfig, **options: Any) -> OffsiteBackup:
    """An uploader for ``device`` to ``config``'s bucket; audit batches go up at once."""
    options.setdefault("retention_days", 30.0)
    options.setdefault("audit_every_s", 0.2)
    return OffsiteBackup(
        config,
        data_dir=device.data_dir,
        store=device.store,
        audit=device.audit,
        owners=device.owners,
        device_key=device.identity.private_key,
        **options,
    )
