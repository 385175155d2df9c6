"""Pairing endpoints: SPAKE2 over the setup code (``crypto._pairing``), one pairing at a time.

``POST /pair/start`` carries the phone's ``pake1`` and answers ``pake2``; ``POST /pair/finish``
carries ``confirm`` and answers ``keys``. Both are unauthenticated and rate limited per address.

Every attempt is counted on disk *before* the device answers ``pake1`` (a phone that sees a wrong
code gives up without telling us, so an attempt counts as failed until it confirms); a confirmed
pairing resets the count. After ``max_pairing_failures`` the device refuses pairing, across
restarts, until someone holds the doorbell button (:meth:`PairingDesk.unlock`).

The first phone becomes the admin. Once the device has an owner, a new phone may pair only after an
admin approved its key id with a signed ``POST /owners/approve``.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from crypto._pairing import DevicePairing
from crypto.errors import PairingFailed
from crypto.keys import PublicKeyBundle, write_secret_file
from crypto.signed import b64url
from hub import keys
from hub._errors import BadRequest, Conflict, Forbidden
from hub.events import EventBus
from hub.routes._auth import check_rate, require_owner
from hub.routes._params import json_body, str_field

if TYPE_CHECKING:
    from hub.app import HubDeps

__all__ = ["MAX_APPROVALS", "PairingDesk", "add_routes"]

logger = logging.getLogger(__name__)

SESSION_TIMEOUT_S = 60.0  # an abandoned pairing blocks others this long at most
APPROVAL_TTL_S = 15 * 60
MAX_APPROVALS = 16  # approvals are admin-signed, but cap them anyway
_STATE_FILE = "pairing-state.json"


@dataclass(slots=True)
class _Session:
    machine: DevicePairing
    phone_key_id: str
    started_s: float


class PairingDesk:
    """The device side of pairing: failure count on disk, the one open session, approvals."""

    def __init__(self, deps: HubDeps, bus: EventBus) -> None:
        self._deps = deps
        self._bus = bus
        self._path = Path(deps.data_dir) / _STATE_FILE
        self._session: _Session | None = None
        self._approvals: OrderedDict[str, float] = OrderedDict()
        # Told "open", "closed" or "locked" when that changes (zeroconf re-announces it).
        # Called on the thread that made the change.
        self.on_state: Callable[[str], None] | None = None

    @property
    def state(self) -> str:
        """What zeroconf advertises: open (no owner yet), closed, or locked."""
        if self.locked:
            return "locked"
        return "open" if self._deps.owners.count() == 0 else "closed"

    @property
    def failures(self) -> int:
        """Attempts counted as failed so far (kept across restarts)."""
        try:
            state = json.loads(self._path.read_text())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError):
            # A damaged state file must not reopen pairing: treat it as locked.
            logger.error("pairing.state_unreadable path=%s", self._path)
            return self._deps.max_pairing_failures
        count = state.get("failures") if isinstance(state, dict) else None
        return count if isinstance(count, int) and count >= 0 else self._deps.max_pairing_failures

    @property
    def locked(self) -> bool:
        return self.failures >= self._deps.max_pairing_failures

    def unlock(self) -> None:
        """Reset the failure count (the doorbell button was held)."""
        self._write(0)
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
        self._write(self.failures + 1)
        if self.locked:
            self._notify()
        machine = DevicePairing(
            code,
            device_signing_key=self._deps.device.public_key,
            tls_fingerprint=self._deps.tls_fingerprint,
        )
        self._session = None
        reply = machine.receive_pake(message)
        self._session = _Session(machine, phone_key_id, now)
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
        self._write(0)
        self._deps.audit.append(
            "owner.added", owner_key_id=owner.key_id, admin=owner.admin, via="pairing"
        )
        logger.info("pairing.paired key_id=%s admin=%s", owner.key_id, owner.admin)
        self._notify()
        return owner, reply

    def close(self) -> None:
        self._session = None

    def _notify(self) -> None:
        if self.on_state is not None:
            self.on_state(self.state)

    def _expire(self, now: float) -> None:
        for kid, until in list(self._approvals.items()):
            if until <= now:
                del self._approvals[kid]

    def _write(self, failures: int) -> None:
        # Atomic and fsynced: a power cut must not forget a failed attempt.
        write_secret_file(self._path, json.dumps({"failures": failures}).encode())


def add_routes(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.post("/pair/start", pair_start),
            web.post("/pair/finish", pair_finish),
            web.post("/owners/approve", approve_owner),
        ]
    )


async def pair_start(request: web.Request) -> web.Response:
    check_rate(request, key_id=None)
    desk = request.app[keys.PAIRING]
    message = await request.read()
    now = request.app[keys.DEPS].clock()
    reply = await request.app[keys.WRITES].run(desk.start, message, now)
    return web.Response(body=reply, content_type="application/json")


async def pair_finish(request: web.Request) -> web.Response:
    check_rate(request, key_id=None)
    desk = request.app[keys.PAIRING]
    message = await request.read()
    now = int(request.app[keys.DEPS].clock())
    owner, reply = await request.app[keys.WRITES].run(desk.finish, message, now)
    request.app[keys.BUS].publish("owner.added", key_id=owner.key_id, admin=owner.admin)
    return web.Response(body=reply, content_type="application/json")


async def approve_owner(request: web.Request) -> web.Response:
    admin = await require_owner(request)
    if not admin.admin:
        raise Forbidden("only an admin can approve a new owner")
    phone_key_id = str_field(await json_body(request), "key_id")
    if len(phone_key_id) != 43:
        raise BadRequest("key_id must be a 43-character JWK thumbprint")
    desk = request.app[keys.PAIRING]
    await request.app[keys.WRITES].run(desk.approve, phone_key_id, request.app[keys.DEPS].clock())
    logger.info("pairing.approved key_id=%s by=%s", phone_key_id, admin.key_id)
    return web.json_response({"approved": phone_key_id, "valid_s": APPROVAL_TTL_S})


def _phone_key_id(message: bytes) -> str:
    try:
        value = json.loads(message)
        phone = value["phone"]
    except (ValueError, TypeError, KeyError):
        raise PairingFailed(
            "pairing failed: pake1 must be a JSON object with a phone key id"
        ) from None
    if not isinstance(phone, str) or not 0 < len(phone) <= 64:
        raise PairingFailed("pairing failed: pake1 must carry the phone's key id")
    return phone


def _raw(phone: Any) -> str:
    return b64url(phone.signing_key.public_bytes_raw())
