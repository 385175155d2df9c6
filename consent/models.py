"""Records of the consent flow: requests, requester identities, decisions, owners and releases.

Times are integer seconds since the Unix epoch (UTC), as in JWT NumericDate.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from crypto.keys import key_id

__all__ = [
    "ALL_CAMERAS",
    "CATEGORIES",
    "CLOCK_SLACK_S",
    "LEGAL_BASES",
    "MAX_WINDOW_S",
    "REQUESTER_KINDS",
    "ConsentClaims",
    "ConsentRequest",
    "Decision",
    "PairedOwner",
    "PastRequest",
    "Release",
    "RequestStatus",
    "RequesterIdentity",
]

REQUESTER_KINDS = (
    "neighbour",
    "local_agency",
    "state_agency",
    "federal_agency",
    "insurer",
    "other",
)
CATEGORIES = (
    "burglary",
    "theft",
    "package_theft",
    "vandalism",
    "assault",
    "missing_person",
    "missing_pet",
    "traffic_collision",
    "other",
)
LEGAL_BASES = ("voluntary", "warrant", "subpoena", "emergency")
ALL_CAMERAS = "*"
MAX_WINDOW_S = 12 * 3600  # DESIGN Promise 4: requests must be narrow
CLOCK_SLACK_S = 300  # tolerated clock difference between requester, phone and device
MAX_REQUEST_LIFETIME_S = 30 * 86400

# Used with fullmatch: `$` alone also matches before a trailing newline.
_CAMERA_RE = re.compile(r"^(\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$")


class RequestStatus(enum.Enum):
    """Where a request stands on the device."""

    PENDING = "pending"
    AUTO_DECLINED = "auto_declined"
    DECLINED = "declined"
    APPROVED = "approved"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class RequesterIdentity:
    """Who the requester says they are; self-asserted, shown to the owner, never verified."""

    name: str
    organisation: str
    kind: str
    jurisdiction: str
    contact: str

    def __post_init__(self) -> None:
        _text("name", self.name, 1, 200)
        _text("organisation", self.organisation, 0, 200)
        _choice("kind", self.kind, REQUESTER_KINDS)
        _text("jurisdiction", self.jurisdiction, 0, 200)
        _text("contact", self.contact, 0, 200)


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """A verified request for footage (DESIGN §Consent flow 1)."""

    request_id: str
    requester_key: Ed25519PublicKey = field(repr=False)
    requester_key_id: str
    recipient: str
    identity: RequesterIdentity
    camera: str
    window_start_s: int
    window_end_s: int
    category: str
    detail: str
    case_reference: str
    reason: str
    legal_basis: str
    issued_at_s: int
    expires_at_s: int
    nonce: str = field(repr=False)

    def __post_init__(self) -> None:
        _text("recipient", self.recipient, 1, 4096)
        if not isinstance(self.camera, str) or not _CAMERA_RE.fullmatch(self.camera):
            raise ValueError(f"camera must be '*' or a camera name, got {self.camera!r:.80}")
        _int("window start", self.window_start_s)
        _int("window end", self.window_end_s)
        if self.window_end_s <= self.window_start_s:
            raise ValueError(
                f"window end must be after its start, got {self.window_start_s}..{self.window_end_s}"
            )
        width = self.window_end_s - self.window_start_s
        if width > MAX_WINDOW_S:
            raise ValueError(f"window must be at most {MAX_WINDOW_S} s (12 h), got {width} s")
        _choice("category", self.category, CATEGORIES)
        _text("detail", self.detail, 0, 500)
        _text("case_reference", self.case_reference, 0, 100)
        _text("reason", self.reason, 1, 2000)
        _choice("legal_basis", self.legal_basis, LEGAL_BASES)
        _int("iat", self.issued_at_s)
        _int("exp", self.expires_at_s)
        if self.expires_at_s <= self.issued_at_s:
            raise ValueError("exp must be after iat")
        if self.expires_at_s - self.issued_at_s > MAX_REQUEST_LIFETIME_S:
            raise ValueError(f"exp must be at most {MAX_REQUEST_LIFETIME_S} s after iat")
        _text("nonce", self.nonce, 16, 128)

    @property
    def window_s(self) -> int:
        """Width of the requested window in seconds (at most MAX_WINDOW_S, 12 h)."""
        return self.window_end_s - self.window_start_s

    def covers(self, camera: str, start_s: float, duration_s: float) -> bool:
        """Whether footage from ``camera`` at ``start_s`` for ``duration_s`` is in this request."""
        if self.camera not in (ALL_CAMERAS, camera):
            return False
        return start_s < self.window_end_s and start_s + duration_s > self.window_start_s


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy says about a request: ask the owner, or decline because of ``rule``."""

    action: Literal["ask", "decline"]
    rule: str | None = None
    reason: str = ""

    @classmethod
    def ask(cls) -> Decision:
        """The decision to pass the request to the owner."""
        return cls("ask")

    @classmethod
    def decline(cls, rule: str, reason: str) -> Decision:
        """The decision to decline under policy ``rule``, giving ``reason``."""
        return cls("decline", rule, reason)

    @property
    def declined(self) -> bool:
        """True for a decline, False for ask."""
        return self.action == "decline"


@dataclass(frozen=True, slots=True)
class PastRequest:
    """One earlier request, as the per-requester rate rule needs it."""

    requester_key_id: str
    received_s: int


@dataclass(frozen=True, slots=True)
class PairedOwner:
    """An owner as the device knows it: signing key, and whether it has been removed."""

    key_id: str
    signing_public: Ed25519PublicKey = field(repr=False)
    removed: bool = False

    @classmethod
    def from_public(cls, signing_public: Ed25519PublicKey, *, removed: bool = False) -> PairedOwner:
        """An owner from its Ed25519 public key (e.g. ``PublicKeyBundle.signing_public``)."""
        return cls(key_id(signing_public), signing_public, removed)


@dataclass(frozen=True, slots=True)
class ConsentClaims:
    """The verified claims of a consent token (DESIGN §Consent flow 3)."""

    issuer: str
    audience: str
    subject: str
    token_id: str
    issued_at_s: int
    not_before_s: int
    expires_at_s: int
    request_id: str
    manifest_sha256: str
    max_downloads: int
    disclosures: dict[str, str]
    # The audit checkpoint the owner's phone had verified when it signed (absent from tokens of
    # phones that never audited): the release's audit entry must be in a tree that extends it.
    checkpoint_size: int | None = None
    checkpoint_root: bytes | None = None


@dataclass(frozen=True, slots=True)
class Release:
    """A stored release on the device."""

    release_id: str
    request_id: str
    owner_key_id: str
    requester_key_id: str
    expires_at_s: int
    max_downloads: int
    downloads: int
    revoked: bool
    segment_ids: tuple[str, ...]
    clip_ids: tuple[str, ...]
    audit_index: int


def _text(name: str, value: Any, min_len: int, max_len: int) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    if not min_len <= len(value) <= max_len:
        raise ValueError(f"{name} must be {min_len} to {max_len} characters, got {len(value)}")


def _int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= value < 2**40:
        raise ValueError(f"{name} must be a time in seconds since 1970, got {value}")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed or not isinstance(value, str):
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r:.80}")
