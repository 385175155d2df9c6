"""The device side of pairing: SPAKE2 over the setup code (``crypto.pairing``), one session at a time.

Every attempt is counted on disk *before* the device answers ``pake1`` (a phone that sees a wrong
code gives up without telling us, so an attempt counts as failed until it confirms); a confirmed
pairing resets the count (:mod:`hub.server.pairing_state`). After ``max_pairing_failures`` the
device refuses pairing, across restarts, until someone holds the doorbell button
(:meth:`PairingDesk.unlock`).

The first phone becomes the admin. Once the device has an owner, a new phone may pair only after an
admin approved its key id (:meth:`PairingDesk.approve`).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crypto.errors import PairingFailed
from crypto.keys import PublicKeyBundle
from crypto.pairing import DevicePairing
from crypto.signed import b64url
from hub.server.deps import HubDeps
from hub.server.events import EventBus
from hub.server.pairing_state import PairingAttempts, PairingState, pairing_state
from hub.wire.errors import Conflict, Forbidden

__all__ = ["APPROVAL_TTL_S", "MAX_APPROVALS", "SESSION_TIMEOUT_S", "PairingDesk"]

logger = logging.getLogger(__name__)

SESSION_TIMEOUT_S = 60.0  # an abandoned pairing blocks others this long at most
APPROVAL_TTL_S = 15 * 60
MAX_APPROVALS = 16  # approvals are admin-signed, but cap them anyway


@dataclass(slots=True)
class _PakeSession:
    machine: DevicePairing
    phone_key_id: str
    started_s: float


class PairingDesk:
    """The device side of pairing: failure count on disk, the one open session, approvals."""

    def __init__(self, deps: HubDeps, bus: EventBus) -> None:
        self._deps = deps
        self._bus = bus
        self._attempts = PairingAttempts.in_dir(deps.data_dir, limit=deps.max_pairing_failures)
        self._session: _PakeSession | None = None
        self._approvals: OrderedDict[str, float] = OrderedDict()
        # Told "open", "closed" or "locked" when that changes (zeroconf re-announces it).
        # Called on the thread that made the change.
        self.on_state: Callable[[PairingState], None] | None = None

    @property
    def state(self) -> PairingState:
        """What zeroconf advertises: open (no owner yet), closed, or locked."""
        return pairing_state(self._attempts, self._deps.owners.count())

    @property
    def failures(self) -> int:
        """Attempts counted as failed so far (kept across restarts)."""
        return self._attempts.failures

    @property
    def locked(self) -> bool:
        """Whether pairing is refused until the doorbell button is held."""
        return self._attempts.locked

    def unlock(self) -> None:
        """Reset the failure count (the doorbell button was held)."""
        self._attempts.reset()
        logger.info("pairing.unlocked")
        self._notify()

    def approve(self, phone_key_id: str, now: float) -> None:
        """Let the phone with ``phone_key_id`` pair during the next APPROVAL_TTL_S seconds."""
        self._expire(now)
        self._approvals.pop(phone_key_id, None)
        self._approvals[phone_key_id] = now + APPROVAL_TTL_S
        while len(self._approvals) > MAX_APPROVALS:
            self._approvals.popitem(last=False)

    def start(self, message: bytes, now: float) -> bytes:
        """Handle ``pake1``: count the attempt, answer ``pake2``."""
        code = self._deps.setup_code
        if code is None:
            raise Conflict(
                "this device has no setup code; pairing is disabled", code="no_setup_code"
            )
        if self.locked:
            raise Forbidden(
                f"pairing is locked after {self._deps.max_pairing_failures} failed attempts; "
                "hold the doorbell button to unlock it",
                code="pairing_locked",
            )
        phone_key_id = _phone_key_id(message)
        # One pairing at a time; the same phone may start over (after a mistyped code it gives
        # up without telling us), another phone waits for the session to time out.
        session = self._session
        if (
            session is not None
            and session.phone_key_id != phone_key_id
            and now - session.started_s < SESSION_TIMEOUT_S
        ):
            raise Conflict("another phone is pairing; try again in a minute", code="pairing_busy")
        if self._deps.owners.count() > 0:
            self._expire(now)
            if phone_key_id not in self._approvals:
                raise Forbidden(
                    "this device already has an owner; ask an admin to approve this phone's key "
                    f"id {phone_key_id} first",
                    code="approval_required",
                )
        self._attempts.record_failure()
        if self.locked:
            self._notify()
        machine = DevicePairing(
            code,
            device_signing_key=self._deps.device.public_key,
            tls_fingerprint=self._deps.tls_fingerprint,
            relay_key_config=self._deps.relay_key_config,
            relay_url=self._deps.relay_url,
        )
        self._session = None
        reply = machine.receive_pake(message)
        self._session = _PakeSession(machine, phone_key_id, now)
        return reply

    def finish(self, message: bytes, now: int) -> tuple[Any, bytes]:
        """Handle ``confirm``: pair the phone and answer ``keys``; returns (owner, reply)."""
        session, self._session = self._session, None
        if session is None or now - session.started_s >= SESSION_TIMEOUT_S:
            raise Conflict("no pairing in progress; start again", code="no_pairing")
        try:
            phone, reply = session.machine.receive_confirm(message)
        except PairingFailed:
            self._deps.audit.append("pairing.failed", phone_key_id=session.phone_key_id)
            raise
        bundle = PublicKeyBundle.from_json({"ed25519": _raw(phone), "age": phone.recipient})
        owner = self._deps.owners.add(bundle, name=phone.name, now=now)
        self._approvals.pop(owner.key_id, None)
        self._attempts.reset()
        self._deps.audit.append(
            "owner.added", owner_key_id=owner.key_id, admin=owner.admin, via="pairing"
        )
        logger.info("pairing.paired key_id=%s admin=%s", owner.key_id, owner.admin)
        self._notify()
        return owner, reply

    def close(self) -> None:
        """Drop any pairing in progress (at shutdown); approvals and failure counts stay."""
        self._session = None

    def _notify(self) -> None:
        if self.on_state is not None:
            self.on_state(self.state)

    def _expire(self, now: float) -> None:
        for kid, until in list(self._approvals.items()):
            if until <= now:
                del self._approvals[kid]


def _phone_key_id(message: bytes) -> str:
    try:
        value = json.loads(message)
        phone = value["phone"]
    except (ValueError, TypeError, KeyError, RecursionError):
        raise PairingFailed(
            "pairing failed: pake1 must be a JSON object with a phone key id"
        ) from None
    if not isinstance(phone, str) or not 0 < len(phone) <= 64:
        raise PairingFailed("pairing failed: pake1 must carry the phone's key id")
    return phone


def _raw(phone: Any) -> str:
    return b64url(phone.signing_key.public_bytes_raw())
