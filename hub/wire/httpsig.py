"""RFC 9421 HTTP Message Signatures (Ed25519) on Doorward API requests, with RFC 9530 digests.

Every owner and requester request carries one signature, labelled ``doorward``, over::

    ("@method" "@target-uri" "content-digest");created=…;keyid="…";nonce="…";alg="ed25519";tag="…"

``content-digest`` is the SHA-256 of the body (RFC 9530, also for an empty body). ``tag`` is the
device id the request is meant for (RFC 9421 §2.3: an application-specific tag), so a request
signed for one doorbell is refused by another even when it reaches it under the same host name.
The signature base is built by the ``http-message-signatures`` package; this module adds the
Doorward profile: exact coverage, the ``created`` window with an injected clock, nonces through
:class:`hub.wire.replay.ReplayCache`, and one stable error code per failure.

The signature covers only the request head (the body enters through ``Content-Digest``), so a
server verifies the head first (:meth:`RequestVerifier.verify_head`) and reads a body only for a
known key whose signature holds (:meth:`RequestVerifier.verify_body`).
"""

from __future__ import annotations

import datetime
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import http_sf
from aiohttp import web
from aiohttp.payload import BytesPayload
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    ContentDigest,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from crypto.errors import DoorwardError
from hub.wire.replay import MAX_NONCE_CHARS, NonceCheck, ReplayCache

__all__ = [
    "COVERED_COMPONENTS",
    "LABEL",
    "WINDOW_S",
    "RequestSigner",
    "RequestVerifier",
    "SignatureRejected",
    "SignedHead",
    "VerifiedRequest",
    "content_digest",
    "sign_http_request",
]

logger = logging.getLogger(__name__)

LABEL = "doorward"
COVERED_COMPONENTS = ("@method", "@target-uri", "content-digest")
WINDOW_S = 60  # s either side of the verifier's clock
_ALG = "ed25519"
_REQUIRED_PARAMS = frozenset({"created", "keyid", "nonce", "tag"})
_ALLOWED_PARAMS = _REQUIRED_PARAMS | {"alg"}
_MAX_HEADER_CHARS = 4096
_MAX_KEYID_CHARS = 128


class SignatureRejected(DoorwardError):
    """A request's HTTP message signature was missing, invalid, stale, replayed or unknown."""

    STATUS: ClassVar[dict[str, int]] = {
        "unsigned": 401,
        "bad_signature": 401,
        "stale": 401,
        "replayed": 401,
        "unknown_key": 403,
        "digest_mismatch": 400,
        "busy": 503,
    }

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = self.STATUS[code]


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """Who signed a request that passed every check."""

    key_id: str
    public_key: Ed25519PublicKey
    created_s: int
    nonce: str


@dataclass(frozen=True, slots=True)
class SignedHead:
    """A request head whose signature verified (:meth:`RequestVerifier.verify_head`); its body
    is not checked yet."""

    key_id: str
    public_key: Ed25519PublicKey
    created_s: int
    nonce: str
    # A relayed call may be older than the window by up to this (None: the window only).
    max_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class _Message:
    """The message interface the library reads: method, absolute URL, headers."""

    method: str
    url: str
    headers: Any


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(
        self,
        key_id: str,
        *,
        public: Ed25519PublicKey | None = None,
        private: Ed25519PrivateKey | None = None,
    ) -> None:
        self._key_id, self._public, self._private = key_id, public, private

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey | None:
        return self._public if key_id == self._key_id else None

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        if key_id != self._key_id or self._private is None:
            raise KeyError(key_id)
        return self._private


class _WindowCheckedElsewhere(HTTPMessageVerifier):
    """The library's own time checks read the wall clock; ours take an injected ``now``."""

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        return None


def content_digest(body: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` field value: ``sha-256=:<base64>:``."""
    return str(ContentDigest.create(body))


def sign_http_request(
    method: str,
    url: str,
    body: bytes,
    *,
    key: Ed25519PrivateKey,
    key_id: str,
    tag: str,
    created_s: int,
    nonce: str,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The ``Content-Digest``, ``Signature-Input`` and ``Signature`` headers for a request."""
    message = _Message(method.upper(), url, dict(headers or {}))
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(key_id, private=key)
    )
    for name in list(message.headers):
        if name.lower() in ("content-digest", "signature", "signature-input"):
            del message.headers[name]
    signer.sign(
        message,
        key_id=key_id,
        created=datetime.datetime.fromtimestamp(created_s, tz=datetime.UTC),
        nonce=nonce,
        label=LABEL,
        tag=tag,
        covered_component_ids=COVERED_COMPONENTS,
        body=body,
    )
    return {
        "Content-Digest": message.headers["Content-Digest"],
        "Signature-Input": message.headers["Signature-Input"],
        "Signature": message.headers["Signature"],
    }


class RequestSigner:
    """Signs requests for one key and one device; a client middleware for aiohttp."""

    def __init__(
        self,
        key: Ed25519PrivateKey,
        *,
        key_id: str,
        device_id: str,
        now_s: Callable[[], float],
        token: Callable[[int], str] = secrets.token_urlsafe,
    ) -> None:
        self._key = key
        self.key_id = key_id
        self.device_id = device_id
        self._now_s = now_s
        self._token = token

    def __repr__(self) -> str:
        return f"RequestSigner(key_id={self.key_id!r}, device_id={self.device_id!r})"

    def headers(self, method: str, url: str, body: bytes = b"") -> dict[str, str]:
        """Signature headers for ``method url`` with ``body``: a fresh nonce, created now."""
        return sign_http_request(
            method,
            url,
            body,
            key=self._key,
            key_id=self.key_id,
            tag=self.device_id,
            created_s=int(self._now_s()),
            nonce=self._token(18),
        )

    async def __call__(self, request: Any, handler: Any) -> Any:
        """aiohttp client middleware: ``ClientSession(middlewares=(signer,))``.

        Signs bodies given as bytes, str or JSON (buffered); refuses streaming bodies, whose
        digest cannot be known before they are sent.
        """
        body = request.body
        data: bytes
        if body is None or body == b"":
            data = b""
        elif isinstance(body, BytesPayload):  # bytes, str and JSON bodies
            data = await body.as_bytes()
        else:
            raise TypeError(f"cannot sign a streaming {type(body).__name__} body; pass bytes")
        for name, value in self.headers(request.method, str(request.url), data).items():
            request.headers[name] = value
        return await handler(request)


class RequestVerifier:
    """Checks the signature on a request to this device. One per device; not thread-safe."""

    def __init__(
        self,
        *,
        device_id: str,
        lookup_key: Callable[[str], Ed25519PublicKey | None],
        replay: ReplayCache,
        window_s: float = WINDOW_S,
    ) -> None:
        self.device_id = device_id
        self._lookup_key = lookup_key
        self._replay = replay
        self.window_s = window_s

    def verify(
        self, method: str, url: str, headers: Any, body: bytes, *, now_s: float
    ) -> VerifiedRequest:
        """Verify a request given as parts; ``headers`` may be a multidict. Raises
        :class:`SignatureRejected`."""
        head = self.verify_head(method, url, headers, now_s=now_s)
        return self.verify_body(head, headers, body, now_s=now_s)

    def precheck(self, headers: Any, *, now_s: float, max_age_s: float | None = None) -> str:
        """Check what needs no key: both fields present, the Doorward profile (this device's
        tag) and the ``created`` window; returns the key id the request claims. Raises
        :class:`SignatureRejected`."""
        params = self._claimed(headers, now_s=now_s, check_window=False)
        self._check_window(params["created"], now_s, max_age_s)
        return str(params["keyid"])

    def verify_head(
        self, method: str, url: str, headers: Any, *, now_s: float, max_age_s: float | None = None
    ) -> SignedHead:
        """Verify everything the request head carries: profile, a known key, the ``created``
        window and the signature itself, which covers only the head (method, target URI and
        the ``Content-Digest`` field). The body is checked afterwards by :meth:`verify_body`, so
        a stranger never makes the device read one. ``max_age_s`` lets a call that waited
        somewhere on the way (at the relay's broker) be older than the window, never newer.
        Raises :class:`SignatureRejected`."""
        params = self._claimed(headers, now_s=now_s, check_window=False)
        key_id = params["keyid"]
        public = self._lookup_key(key_id)
        if public is None:
            raise _reject("unknown_key", f"key {key_id} is not known to this device; pair first")
        self._check_window(params["created"], now_s, max_age_s)
        verifier = _WindowCheckedElsewhere(
            signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(key_id, public=public)
        )
        try:
            verifier.verify(
                _Message(method.upper(), url, headers),
                max_age=None,
                require_components=COVERED_COMPONENTS,
            )
        except HTTPMessageSignaturesException as exc:
            logger.info("httpsig.bad_signature key_id=%s reason=%s", key_id, exc)
            raise _reject("bad_signature", "the request signature does not verify") from None
        return SignedHead(key_id, public, params["created"], params["nonce"], max_age_s)

    def verify_body(
        self, head: SignedHead, headers: Any, body: bytes, *, now_s: float
    ) -> VerifiedRequest:
        """Finish :meth:`verify_head`: the body must match the signed ``Content-Digest``, and the
        nonce must be fresh (it is remembered from now on). Raises :class:`SignatureRejected`."""
        digest = _field(headers, "content-digest")
        try:
            ContentDigest.verify(digest or "", body)
        except HTTPMessageSignaturesException:
            raise _reject(
                "digest_mismatch", "the Content-Digest does not match the request body"
            ) from None
        check = self._replay.check_and_add(
            head.key_id,
            head.nonce,
            created_s=head.created_s,
            now_s=now_s,
            keep_s=max(self.window_s, head.max_age_s or 0.0),
        )
        if check is NonceCheck.REPLAYED:
            logger.warning("httpsig.replayed key_id=%s", head.key_id)
            raise _reject("replayed", "this signed request was already received; sign it again")
        if check is not NonceCheck.FRESH:
            logger.warning("httpsig.replay_cache_full key_id=%s scope=%s", head.key_id, check.value)
            raise _reject("busy", "too many signed requests in the last minute; retry later")
        return VerifiedRequest(head.key_id, head.public_key, head.created_s, head.nonce)

    async def verify_aiohttp(
        self,
        request: web.Request,
        *,
        now_s: float,
        read_body: Callable[[web.Request], Awaitable[bytes]] | None = None,
    ) -> VerifiedRequest:
        """Verify an aiohttp server request: its head first, then its body, read (by
        ``read_body``, default ``request.read()``) only once the head has passed."""
        head = self.verify_head(request.method, str(request.url), request.headers, now_s=now_s)
        body = await (read_body or _read_all)(request)
        return self.verify_body(head, request.headers, body, now_s=now_s)

    def _claimed(self, headers: Any, *, now_s: float, check_window: bool = True) -> dict[str, Any]:
        sig_input = _field(headers, "signature-input")
        signature = _field(headers, "signature")
        if sig_input is None and signature is None:
            raise _reject("unsigned", "the request is not signed; sign it with your paired key")
        if sig_input is None or signature is None:
            raise _reject("bad_signature", "Signature and Signature-Input must come together")
        params = self._profile(sig_input)
        if check_window:
            self._check_window(params["created"], now_s)
        return params

    def _check_window(self, created: int, now_s: float, max_age_s: float | None = None) -> None:
        oldest = max(self.window_s, max_age_s or 0.0)
        if now_s - oldest <= created <= now_s + self.window_s:
            return
        if created < now_s and oldest > self.window_s:  # a relayed call, waited too long
            raise _reject(
                "stale",
                f"the signature was created {int(now_s - created)} s before the device got the "
                f"call, more than the {int(oldest)} s a relayed call may wait; send it again",
            )
        where = "behind" if created < now_s else "ahead of"
        raise _reject(
            "stale",
            f"the signature was created {abs(int(now_s - created))} s {where} the "
            f"device clock, outside ±{int(self.window_s)} s; check the signer's clock",
        )

    def _profile(self, sig_input: str) -> dict[str, Any]:
        """Parse Signature-Input and hold it to the Doorward profile."""
        try:
            parsed = http_sf.parse(sig_input.encode("ascii"), tltype="dictionary")
        except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError):
            raise _reject("bad_signature", "Signature-Input is not a structured field") from None
        members: dict[str, Any] = parsed  # type: ignore[assignment]  # tltype="dictionary"
        if list(members) != [LABEL]:
            raise _reject(
                "bad_signature", f"the request must carry exactly one {LABEL!r} signature"
            )
        covered, params = members[LABEL]
        if (
            not isinstance(covered, list)
            or not all(isinstance(item, str) for item, _ in covered)
            or sorted(item for item, _ in covered) != sorted(COVERED_COMPONENTS)
        ):
            raise _reject(
                "bad_signature", f"the signature must cover exactly {' '.join(COVERED_COMPONENTS)}"
            )
        if any(item_params for _, item_params in covered):
            raise _reject("bad_signature", "covered components must not have parameters")
        if not set(params) >= _REQUIRED_PARAMS or not set(params) <= _ALLOWED_PARAMS:
            raise _reject(
                "bad_signature", "the signature must have exactly created, keyid, nonce, tag, alg"
            )
        if params.get("alg", _ALG) != _ALG:
            raise _reject("bad_signature", f"the signature algorithm must be {_ALG}")
        if type(params["created"]) is not int:
            raise _reject("bad_signature", "created must be an integer")
        keyid, nonce, tag = params["keyid"], params["nonce"], params["tag"]
        if not (isinstance(keyid, str) and 0 < len(keyid) <= _MAX_KEYID_CHARS):
            raise _reject("bad_signature", "keyid must be a short string")
        if not (isinstance(nonce, str) and 16 <= len(nonce) <= MAX_NONCE_CHARS):
            raise _reject("bad_signature", f"nonce must be 16-{MAX_NONCE_CHARS} characters")
        if tag != self.device_id:
            raise _reject("bad_signature", "the signature is for another device")
        return dict(params)


def _field(headers: Any, name: str) -> str | None:
    """All lines of one header field, combined as RFC 9110 §5.3 says; None when absent."""
    lines = [v for k, v in headers.items() if k.lower() == name]
    if not lines:
        return None
    value = ", ".join(lines)
    if len(value) > _MAX_HEADER_CHARS:
        raise _reject("bad_signature", f"{name} is longer than {_MAX_HEADER_CHARS} characters")
    return value


async def _read_all(request: web.Request) -> bytes:
    return await request.read()


def _reject(code: str, message: str) -> SignatureRejected:
    return SignatureRejected(code, message)
