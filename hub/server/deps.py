"""What the API needs from the running device: :class:`HubDeps`, built by ``serve`` or a test."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from consent.audit import AuditLog
from consent.cosignatures import CosignatureBook
from consent.desk import ConsentDesk
from crypto.keys import DeviceIdentity
from crypto.setup_code import SetupCode
from device.pipeline import PipelineStats
from device.store import ClipStore
from hub.server.config import DEFAULT_SIGNATURE_WINDOW_S
from hub.server.owners import OwnersTable

if TYPE_CHECKING:  # the S3 client is imported only by a device that has a backup store
    from hub.server.backup import OffsiteBackup
    from hub.server.release_offsite import OffsiteReleases
    from hub.server.segment_links import SegmentLinks

__all__ = ["CameraInfo", "HubDeps"]


@dataclass(frozen=True, slots=True)
class CameraInfo:
    """A camera as the API lists it; ``stats`` reads its pipeline's counters."""

    name: str
    spec: str
    width: int
    height: int
    fps: float
    codec: str
    stats: Callable[[], PipelineStats] = field(repr=False, default=PipelineStats)


@dataclass(frozen=True, slots=True)
class HubDeps:
    """What the API needs from the running device (built by ``serve`` or a test)."""

    device: DeviceIdentity
    store: ClipStore
    audit: AuditLog
    desk: ConsentDesk
    owners: OwnersTable
    cosignatures: CosignatureBook
    tls_fingerprint: str
    data_dir: Path
    cameras: Mapping[str, CameraInfo] = field(default_factory=dict)
    setup_code: SetupCode | None = field(default=None, repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False)
    name: str = "Doorward"
    # Signed requests older or newer than this are refused (RFC 9421 ``created``).
    signature_window_s: int = DEFAULT_SIGNATURE_WINDOW_S
    # Per-key and per-address token buckets for requester and unauthenticated routes.
    rate_per_s: float = 2.0
    rate_burst: int = 20
    max_pairing_failures: int = 20
    # A request body must arrive within this once its head has (``hub.server.routes._body``).
    body_timeout_s: float = 60.0
    # Failed signatures per address: a burst, then a refill rate; past it, 429.
    auth_failure_burst: int = 10
    auth_failure_per_s: float = 0.2
    # The off-site uploader (``hub.server.backup.OffsiteBackup``) when a bucket is configured.
    backup: OffsiteBackup | None = None
    # Release bundles go to the backup store and requesters get presigned URLs (None: no store).
    offsite_releases: OffsiteReleases | None = None
    # Presigned URLs for uploaded segments, for owners who prefer them (over the relay).
    segment_links: SegmentLinks | None = None
    # The device's relay key configuration (RFC 9458 §3), served to owners (None: no relay key).
    relay_key_config: bytes | None = None
    # The token the device's relay connection sends to its own API (``hub.wire.relay_hop``).
    relay_hop_token: str | None = field(default=None, repr=False)
    # A relayed call may have waited at the broker (the doorbell offline) this long after it was
    # signed; its nonce is remembered as long. Direct calls keep ``signature_window_s``.
    relay_max_age_s: int = 1800
    # Where clients reach the device through the relay (``[relay]``'s client listener), handed
    # to phones at pairing and in the request address (None: no relay configured).
    relay_url: str | None = None
