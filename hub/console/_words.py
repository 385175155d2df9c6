"""Audit log entries in plain words, for the console's audit page (pure: a leaf's JSON in, a
sentence out). The entry's fields are shown beside the sentence as they are; the sentence only
says what happened."""

from __future__ import annotations

from typing import Any

__all__ = ["describe_entry"]

_SENTENCES = {
    "request.received": "A request for footage arrived",
    "request.auto_declined": "The policy declined a request",
    "request.pending": "A request is waiting for an owner's decision",
    "request.approved": "An owner approved a request",
    "request.declined": "An owner declined a request",
    "release.created": "Footage was released to a requester",
    "release.downloaded": "A requester downloaded released footage",
    "release.sent": "Released footage was sent",
    "release.revoked": "An owner withdrew a release",
    "release.expired": "A release expired",
    "release.uploaded": "A release bundle went to the off-site store",
    "release.presigned": "A download link for a release bundle was issued",
    "owner.added": "An owner was added",
    "owner.removed": "An owner was removed",
    "pairing.failed": "Someone tried to pair with a wrong setup code",
    "policy.changed": "The policy was changed",
    "clip.deleted": "A clip was deleted",
    "clip.sealed": "A clip finished recording and was sealed",
    "live.started": "Live view started",
    "live.ended": "Live view ended",
    "consent.refused": "The doorbell refused an invalid token, request or fetch",
    "consent.refusals_counted": "Repeated refusals were counted",
    "backup.skipped": "Some segments will not be backed up",
    "backup.deleted": "Retention deleted a clip from the off-site store",
}
# The fields worth naming in the sentence, in order, and how to introduce each.
_DETAILS = (
    ("name", "by"),
    ("organisation", "of"),
    ("rule", "by rule"),
    ("reason", "because"),
    ("camera", "on camera"),
    ("segment_count", "segments:"),
    ("request_id", "request"),
    ("release_id", "release"),
    ("clip_id", "clip"),
)


def describe_entry(body: dict[str, Any]) -> str:
    """One sentence for the audit leaf ``body`` (its kind, then the fields that matter)."""
    kind = str(body.get("kind", "?"))
    sentence = _SENTENCES.get(kind, f"An entry of kind {kind}")
    details = [f"{label} {body[key]}" for key, label in _DETAILS if body.get(key) not in (None, "")]
    return sentence + (" (" + ", ".join(details) + ")" if details else "")
