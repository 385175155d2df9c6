"""The device's durable state under one data directory, opened (and on first start created) here.

keys/device.ed25519   the device's Ed25519 key (0600)      keys/device.crt   its TLS certificate
keys/setup-code       the 8-digit pairing code (0600)       doorward.db       SQLite (WAL)
keys/relay.x25519     the relay key (OHTTP, 0600)           keys/relay-pq.seed  the hybrid one (0600)
audit.db              the audit log and owners' cosignatures   clips/…        encrypted segments
pairing-state.json    failed pairing attempts (``hub.server.pairing_state``)

The directory and ``keys/`` are 0700, only the device's user may open them (``hub.server.data_dir``).
"""

from __future__ import annotations

import logging
import sqlite3
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from consent.audit import AuditLog, audit_origin
from consent.cosignatures import CosignatureBook
from consent.desk import ConsentDesk, RequestLimits
from crypto.keys import DeviceIdentity, read_secret_file, write_secret_file
from crypto.setup_code import PairingURI, SetupCode, draw_setup_code
from crypto.tls import (
    load_certificate,
    make_certificate,
    server_context,
    spki_fingerprint,
    write_certificate,
)
from device import ClipSeal, ClipStore
from hub.server.config import ConfigError, ServeConfig
from hub.server.data_dir import prepare_data_dir
from hub.server.deps import CameraInfo, HubDeps
from hub.server.owners import OwnersTable
from hub.wire.ohttp import GatewayKey
from hub.wire.ohttp_pq import PqGatewayKey
from hub.wire.relay_hop import hop_token
from hub.wire.relay_keys import RelayKeys

if TYPE_CHECKING:
    from hub.server.backup import OffsiteBackup

__all__ = ["Device"]

logger = logging.getLogger(__name__)


@dataclass
class Device:
    """The device's durable state under one data directory (see the module docstring)."""

    data_dir: Path
    identity: DeviceIdentity
    store: ClipStore
    audit: AuditLog
    owners: OwnersTable
    desk: ConsentDesk
    cosignatures: CosignatureBook
    cert_path: Path
    key_path: Path
    fingerprint: str
    setup_code: SetupCode = field(repr=False)
    relay_key: GatewayKey | None = field(default=None, repr=False)
    relay_pq_key: PqGatewayKey | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls,
        data_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        request_limits: RequestLimits | None = None,
    ) -> Device:
        """Open the data directory, creating identity, certificate and setup code on first start;
        ``request_limits`` caps the requests held per key and address (default: the defaults)."""
        data_dir = Path(data_dir)
        prepare_data_dir(data_dir)
        key_dir = data_dir / "keys"
        key_path = key_dir / "device.ed25519"
        identity = DeviceIdentity.load_or_create(key_path)
        cert_path = key_dir / "device.crt"
        if not cert_path.exists():
            cert = make_certificate(
                identity.private_key, identity.device_id, now=datetime.fromtimestamp(clock(), UTC)
            )
            write_certificate(cert_path, cert)
        fingerprint = spki_fingerprint(load_certificate(cert_path))
        if fingerprint != spki_fingerprint(identity.public_key):
            raise ConfigError(f"{cert_path} is for another key; delete it and start again")
        code_path = key_dir / "setup-code"
        if code_path.exists():
            code = SetupCode.parse(read_secret_file(code_path).decode().strip())
        else:
            code = draw_setup_code()
            write_secret_file(code_path, code.digits().encode())
        relay_key = _relay_key(key_dir / "relay.x25519")
        relay_pq_key = _relay_pq_key(key_dir / "relay-pq.seed")
        audit = AuditLog(
            data_dir / "audit.db",
            signer=identity.private_key,
            origin=audit_origin(identity.public_key),
            clock=clock,
        )

        def deleted(clip_id: str, reason: str) -> None:  # retention and disk-full eviction
            audit.append("clip.deleted", clip_id=clip_id, reason=reason)

        def sealed(seal: ClipSeal) -> None:  # a finished clip's last manifest, for the phones
            audit.append(
                "clip.sealed",
                clip_id=seal.clip_id,
                camera=seal.camera,
                segment_count=seal.segment_count,
                manifest_sha256=seal.manifest_sha256,
            )

        store = ClipStore(data_dir, identity, clock=clock, on_deleted=deleted, on_sealed=sealed)
        # Release bundles spooled for a download that a crash interrupted (ciphertext only).
        for leftover in (data_dir / "spool").glob("release-*"):
            leftover.unlink()
        owners = OwnersTable(data_dir / "doorward.db")
        desk = ConsentDesk(
            _desk_connection(data_dir / "doorward.db"),
            device=identity,
            clips=store,  # type: ignore[arg-type]  # list_clips has extra keyword options
            audit=audit,
            owners=owners.paired_owners,
            limits=request_limits,
        )
        cosignatures = CosignatureBook(data_dir / "audit.db", log=audit)
        logger.info("device.open device_id=%s data_dir=%s", identity.device_id, data_dir)
        return cls(
            data_dir,
            identity,
            store,
            audit,
            owners,
            desk,
            cosignatures,
            cert_path,
            key_path,
            fingerprint,
            code,
            relay_key,
            relay_pq_key,
        )

    def relay_keys(self) -> bytes | None:
        """The relay key configurations phones pin and addresses carry (``hub.wire.relay_keys``):
        the X25519 one and the hybrid one; None without a relay key."""
        if self.relay_key is None:
            return None
        hybrid = self.relay_pq_key.config() if self.relay_pq_key is not None else None
        return bytes(RelayKeys(self.relay_key.config(), hybrid))

    def ssl_context(self) -> ssl.SSLContext:
        """The API's TLS 1.3 server context (the device's Ed25519 certificate)."""
        return server_context(self.cert_path, self.key_path)

    def deps(
        self,
        cameras: Mapping[str, CameraInfo],
        config: ServeConfig,
        *,
        clock: Callable[[], float] = time.time,
        backup: OffsiteBackup | None = None,
    ) -> HubDeps:
        """What the API needs from this device, with ``config``'s limits (and its off-site
        uploader, when a bucket is configured)."""
        return HubDeps(
            device=self.identity,
            store=self.store,
            audit=self.audit,
            desk=self.desk,
            owners=self.owners,
            cosignatures=self.cosignatures,
            tls_fingerprint=self.fingerprint,
            data_dir=self.data_dir,
            cameras=dict(cameras),
            setup_code=self.setup_code,
            clock=clock,
            name=config.name,
            signature_window_s=config.signature_window_s,
            rate_per_s=config.rate_per_s,
            rate_burst=config.rate_burst,
            max_pairing_failures=config.max_pairing_failures,
            body_timeout_s=config.body_timeout_s,
            auth_failure_burst=config.auth_failure_burst,
            auth_failure_per_s=config.auth_failure_per_s,
            backup=backup,
            relay_key_config=self.relay_keys(),
            relay_hop_token=hop_token(self.relay_key) if self.relay_key else None,
            relay_url=config.relay.clients_url if config.relay is not None else None,
        )

    def pairing_uri(self, host: str | None = None, port: int | None = None) -> PairingURI:
        """The URI (and QR code) a phone pairs with: device id, setup code, TLS pin, address."""
        return PairingURI(self.identity.device_id, self.setup_code, self.fingerprint, host, port)

    def close(self) -> None:
        """Close the owners table, the cosignatures, the audit log and the clip store."""
        self.owners.close()
        self.cosignatures.close()
        self.audit.close()
        self.store.close()
        logger.info("device.closed device_id=%s", self.identity.device_id)


def _desk_connection(path: Path) -> sqlite3.Connection:
    # Default isolation level: the desk groups its writes with ``with db:`` transactions.
    # Used from the API's single write thread only.
    db = sqlite3.connect(path, check_same_thread=False, timeout=10.0)
    db.execute("PRAGMA journal_mode=WAL")
    return db


RELAY_KEY_ID = 1  # the key id of the device's relay key configuration (RFC 9458 §3)


RELAY_PQ_KEY_ID = 2  # the hybrid relay key's id: distinct from the X25519 one's


def _relay_pq_key(path: Path) -> PqGatewayKey:
    """The device's hybrid relay key (ML-KEM-768+X25519, ``hub.wire.ohttp_pq``): read, or made
    and written (0600) on first start, also by a device that had only the X25519 one."""
    if path.exists():
        return PqGatewayKey(RELAY_PQ_KEY_ID, read_secret_file(path))
    key = PqGatewayKey.generate(RELAY_PQ_KEY_ID)
    write_secret_file(path, key.seed)
    return key


def _relay_key(path: Path) -> GatewayKey:
    """The device's relay key (X25519, for Oblivious HTTP through the relay): read, or made and
    written (0600) on first start."""
    if path.exists():
        return GatewayKey.from_private_bytes(RELAY_KEY_ID, read_secret_file(path))
    key = GatewayKey.generate(RELAY_KEY_ID)
    write_secret_file(path, key.private_bytes())
    return key
