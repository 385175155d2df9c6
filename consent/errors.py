"""Errors raised by Doorward's consent flow.

Hierarchy::

    DoorwardError
    └── ConsentError                a request, decision, token or release is refused
        ├── RequestInvalid          a request is malformed, badly signed or out of bounds
        ├── RequestLimited          a requester key or client address holds too many requests
        ├── PolicyRefused           the owner's policy declined a request automatically
        ├── PolicyInvalid           a policy document is malformed or not signed by an owner
        ├── TokenInvalid            a token is malformed, oversized, badly signed or of the wrong alg
        │   ├── DuplicateKey        a JSON object in a token repeats a member name
        │   └── TokenTooLarge       a token is longer than the limit, refused before parsing
        ├── TokenExpired            a token (or release) is past its expiry
        ├── TokenNotYetValid        a token claims to be valid only later
        ├── TokenReplayed           a token id (jti) was already used
        ├── WrongAudience           a token is addressed to another device
        ├── UnknownSigner           a token is signed by a key that is not a paired owner
        ├── SignerRemoved           a token is signed by an owner who has been removed
        ├── RequestMismatch         a token does not belong to this request or it is not pending
        ├── ManifestMismatch        the release manifest does not match the token or the store
        ├── CheckpointMismatch      the audit checkpoint in a consent token is not of this log
        ├── ClipManifestInvalid     a device-signed clip manifest is malformed or of another type
        ├── FootageMismatch         footage a device served the phone disagrees with what it signed
        ├── SegmentMissing          a released segment is not in the store
        ├── HeaderInvalid           a re-wrapped age header is malformed or for the wrong recipient
        ├── HeaderReused            two released segments carry the same age header
        ├── WrongRequester          a download is asked for by a key other than the requester's
        ├── DownloadsExhausted      the release was downloaded as often as the owner allowed
        ├── ReleaseRevoked          an owner revoked the release
        ├── RevocationTooLate       the release was already downloaded and cannot be unsent
        ├── UnknownRelease          no release has that id
        ├── UnknownRequest          no request has that id
        └── BundleInvalid           a release bundle fails a signature, hash or proof check

Messages name the value that failed, never a key, token or file key.
"""

from __future__ import annotations

from crypto.errors import DoorwardError

__all__ = [
    "BundleInvalid",
    "CheckpointMismatch",
    "ClipManifestInvalid",
    "ConsentError",
    "DownloadsExhausted",
    "DuplicateKey",
    "FootageMismatch",
    "HeaderInvalid",
    "HeaderReused",
    "ManifestMismatch",
    "PolicyInvalid",
    "PolicyRefused",
    "ReleaseRevoked",
    "RequestInvalid",
    "RequestLimited",
    "RequestMismatch",
    "RevocationTooLate",
    "SegmentMissing",
    "SignerRemoved",
    "TokenExpired",
    "TokenInvalid",
    "TokenNotYetValid",
    "TokenReplayed",
    "TokenTooLarge",
    "UnknownRelease",
    "UnknownRequest",
    "UnknownSigner",
    "WrongAudience",
    "WrongRequester",
]


class ConsentError(DoorwardError):
    """A consent request, decision, token or release was refused."""


class RequestInvalid(ConsentError):
    """The request is malformed, badly signed or out of bounds: fix it and sign it again."""


class RequestLimited(ConsentError):
    """This requester key or client address already holds as many requests as the device keeps
    from one requester: wait for the owner to decide, or retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PolicyRefused(ConsentError):
    """The owner's policy declined the request before the owner was asked."""

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


class PolicyInvalid(ConsentError):
    """A policy document is malformed or not signed by a current owner."""


class TokenInvalid(ConsentError):
    """The token is malformed, oversized, of the wrong algorithm or its signature fails."""


class DuplicateKey(TokenInvalid):
    """A JSON object in the token repeats a member name: parsers could disagree, so it is refused."""


class TokenTooLarge(TokenInvalid):
    """The token is longer than the limit; it is refused before any parsing."""


class TokenExpired(ConsentError):
    """The token or release is past its expiry: ask the owner for a new one."""


class TokenNotYetValid(ConsentError):
    """The token is dated in the future: check the clocks of the phone and the device."""


class TokenReplayed(ConsentError):
    """This token id was already presented: every token is used once."""


class WrongAudience(ConsentError):
    """The token is addressed to another device."""


class UnknownSigner(ConsentError):
    """The token is signed by a key that is not one of this device's paired owners."""


class SignerRemoved(ConsentError):
    """The token is signed by an owner who has since been removed from this device."""


class RequestMismatch(ConsentError):
    """The token is for another request or requester, or the request is no longer pending."""


class ManifestMismatch(ConsentError):
    """The release manifest differs from the one the owner signed or from the stored segments."""


class CheckpointMismatch(ConsentError):
    """The audit checkpoint a consent token carries is not one of this device's log: the owner's
    phone verified another view of it. Audit again (``doorward owner audit``) before approving."""


class ClipManifestInvalid(ConsentError):
    """A clip manifest is malformed, or not a clip manifest of a version this code reads."""


class FootageMismatch(ConsentError):
    """Footage the device served for approval disagrees with what it listed or signed, or a
    header does not open its payload: the device may be compromised; nothing was signed."""


class SegmentMissing(ConsentError):
    """A released segment is not (or no longer) in the clip store."""


class HeaderInvalid(ConsentError):
    """A re-wrapped age header is malformed or is not for the requester's kind of recipient."""


class HeaderReused(ConsentError):
    """Two released segments carry the same age header: one was swapped in from the other."""


class WrongRequester(ConsentError):
    """The download was asked for by a key other than the requester's."""


class DownloadsExhausted(ConsentError):
    """The release was downloaded as many times as the owner allowed."""


class ReleaseRevoked(ConsentError):
    """An owner revoked this release."""


class RevocationTooLate(ConsentError):
    """The release was already downloaded: a release cannot be unsent."""


class UnknownRelease(ConsentError):
    """No release with that id exists on this device."""


class UnknownRequest(ConsentError):
    """No request with that id exists on this device."""


class BundleInvalid(ConsentError):
    """A release bundle fails a signature, hash or proof check: do not trust its contents."""
