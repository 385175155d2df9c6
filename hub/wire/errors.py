"""The API's refusals as exceptions: each carries its HTTP status and stable error code.

Codes are part of the API (clients branch on them); messages are for people and may change. The
server answers every error as ``{"error": {"code": …, "message": …}}`` (:mod:`hub.server.errors`).
"""

from __future__ import annotations

from crypto.errors import DoorwardError

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "HubError",
    "NotFound",
    "RateLimited",
    "Unauthorized",
]


class HubError(DoorwardError):
    """An API request was refused; ``code`` is the stable error code sent to the client."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class BadRequest(HubError):
    """The request is malformed: fix the parameters or body."""


class Unauthorized(HubError):
    """The request is unsigned, badly signed, stale or replayed: sign it again with a fresh nonce."""

    status = 401
    code = "unauthorized"


class Forbidden(HubError):
    """The signer is known but not allowed to do this (not an owner, not an admin, not the requester)."""

    status = 403
    code = "forbidden"


class NotFound(HubError):
    """Nothing has that id on this device."""

    status = 404
    code = "not_found"


class Conflict(HubError):
    """The request clashes with the device's state (pairing in progress, already done)."""

    status = 409
    code = "conflict"


class RateLimited(HubError):
    """Too many requests from this key or address: wait ``retry_after_s`` and try again."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
