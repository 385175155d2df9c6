"""The one place where the API turns errors into HTTP answers.

Every error is JSON: ``{"error": {"code": <stable code>, "message": <human text>}}``. Codes are
part of the API (clients branch on them); messages are for people and may change. A Doorward error
maps through its class (nearest listed ancestor wins); aiohttp's HTTP errors keep their status; any
other exception is our bug: it is logged with its traceback and answered as a bare 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from consent import CheckpointError, CosignatureError
from consent import errors as consent_errors
from crypto.errors import DoorwardError, PairingFailed, SignatureError
from device.errors import ClipHeld, StoreError
from hub.wire.errors import HubError, RateLimited

__all__ = [
    "error_body",
    "error_middleware",
    "error_status",
]

logger = logging.getLogger(__name__)


# Nearest listed class in the exception's MRO decides (status, code).
_TABLE: dict[type[BaseException], tuple[int, str]] = {
    consent_errors.RequestInvalid: (400, "request_invalid"),
    consent_errors.RequestLimited: (429, "rate_limited"),
    consent_errors.PolicyRefused: (403, "policy_refused"),
    consent_errors.PolicyInvalid: (400, "policy_invalid"),
    consent_errors.TokenInvalid: (400, "token_invalid"),
    consent_errors.TokenTooLarge: (413, "token_too_large"),
    consent_errors.TokenExpired: (410, "expired"),
    consent_errors.TokenNotYetValid: (400, "token_not_yet_valid"),
    consent_errors.TokenReplayed: (409, "token_replayed"),
    consent_errors.WrongAudience: (400, "wrong_audience"),
    consent_errors.UnknownSigner: (403, "unknown_signer"),
    consent_errors.SignerRemoved: (403, "signer_removed"),
    consent_errors.RequestMismatch: (409, "request_mismatch"),
    consent_errors.ManifestMismatch: (400, "manifest_mismatch"),
    consent_errors.CheckpointMismatch: (409, "checkpoint_mismatch"),
    consent_errors.SegmentMissing: (409, "segment_missing"),
    consent_errors.HeaderInvalid: (400, "header_invalid"),
    consent_errors.HeaderReused: (400, "header_reused"),
    consent_errors.WrongRequester: (403, "wrong_requester"),
    consent_errors.DownloadsExhausted: (410, "downloads_exhausted"),
    consent_errors.ReleaseRevoked: (410, "release_revoked"),
    consent_errors.RevocationTooLate: (409, "revocation_too_late"),
    consent_errors.UnknownRelease: (404, "not_found"),
    consent_errors.UnknownRequest: (404, "not_found"),
    consent_errors.ConsentError: (400, "consent_refused"),
    CosignatureError: (400, "cosignature_invalid"),
    CheckpointError: (409, "checkpoint_unknown"),
    ClipHeld: (409, "clip_held"),
    StoreError: (404, "not_found"),
    SignatureError: (401, "bad_signature"),
    PairingFailed: (403, "pairing_failed"),
    DoorwardError: (400, "bad_request"),
}

# Refusals after which the connection is closed whatever happened to the body.
_CLOSING = frozenset({401, 403, 408, 413, 429})

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_status(exc: DoorwardError) -> tuple[int, str]:
    """The HTTP status and stable code for a Doorward error."""
    if isinstance(exc, HubError):
        return exc.status, exc.code
    status, code = getattr(exc, "status", None), getattr(exc, "code", None)
    if isinstance(status, int) and isinstance(code, str):  # e.g. hub.wire.httpsig.SignatureRejected
        return status, code
    for cls in type(exc).__mro__:
        if cls in _TABLE:
            return _TABLE[cls]
    return 400, "bad_request"


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON error body ``{"error": {"code", "message", **extra}}`` every refusal is sent as."""
    return {"error": {"code": code, "message": message, **extra}}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Map exceptions raised by handlers to JSON error answers."""
    try:
        return await handler(request)
    except DoorwardError as exc:
        status, code = error_status(exc)
        extra: dict[str, Any] = {}
        headers: dict[str, str] = {}
        if isinstance(exc, consent_errors.PolicyRefused):
            extra["rule"] = exc.rule
        if isinstance(exc, RateLimited | consent_errors.RequestLimited):
            headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
        if status >= 500:
            logger.error("api.error path=%s code=%s", request.path, code)
        else:
            logger.info("api.refused path=%s status=%d code=%s", request.path, status, code)
        response = web.json_response(
            error_body(code, str(exc), **extra), status=status, headers=headers
        )
        return _closing_if_refused(request, response)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        response = web.json_response(error_body(code, message), status=exc.status, headers=headers)
        return _closing_if_refused(request, response)
    except ConnectionResetError:
        # The client went away mid-request (often mid-body): nobody is left to answer, and it
        # is not our bug. aiohttp drops the answer quietly.
        logger.debug("api.client_gone path=%s", request.path)
        return web.Response(status=499)
    except Exception:
        # Our bug, not the client's: full traceback in the log, nothing internal in the answer.
        logger.exception("api.internal_error path=%s", request.path)
        return web.json_response(
            error_body("internal", "the device failed to handle this request; see its log"),
            status=500,
        )


def _closing_if_refused(request: web.Request, response: web.Response) -> web.Response:
    """Close the connection after a refusal whose body was never read (the device will not read
    it either) and after a failed signature (a stranger reconnects, with a new handshake, to try
    again)."""
    if response.status in _CLOSING or not request.content.is_eof():
        response.force_close()
    return response
