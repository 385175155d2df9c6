"""The owners' event stream as both sides see it: event kinds, one event's JSON, close codes.

``GET /events`` is a WebSocket; each message is one :class:`Event` as JSON. A subscriber that falls
behind is dropped with close code :data:`CLOSE_TOO_SLOW`; the stream of an owner who is removed is
closed at once with :data:`CLOSE_OWNER_REMOVED` and gets no later event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CLOSE_OWNER_REMOVED", "CLOSE_TOO_SLOW", "EVENT_KINDS", "Event"]

EVENT_KINDS = frozenset(
    {
        "motion",
        "clip.started",
        "clip.finished",
        "doorbell.pressed",
        "request.pending",
        "request.decided",
        "release.downloaded",
        "release.offsite",
        "owner.added",
        "owner.removed",
        "live.started",
        "live.ended",
        # An owner talks back through a live session's speaker (session_id, camera, owner_key_id).
        "talk.started",
        "talk.ended",
        # The off-site backup stopped working (error, message) or works again (target).
        "backup.failed",
        "backup.recovered",
        # Quick replies: stored or removed (name, owner_key_id), played on a camera's speaker
        # (name, camera, owner_key_id, played_ms, complete).
        "reply.added",
        "reply.removed",
        "reply.played",
        # A two-stream camera's detect stream stopped (camera, reason: motion now decodes the
        # main stream) or delivers again (camera).
        "camera.detect_lost",
        "camera.detect_restored",
    }
)
CLOSE_TOO_SLOW = 4008  # WebSocket close code for a subscriber dropped for falling behind
CLOSE_OWNER_REMOVED = 4003  # WebSocket close code for a stream whose owner was removed


@dataclass(frozen=True, slots=True)
class Event:
    """One event: ``kind`` from :data:`EVENT_KINDS`, a sequence number, a time and its fields."""

    seq: int
    kind: str
    time_s: float
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The event as one WebSocket message: ``seq``, ``kind``, ``time`` (epoch s), ``data``."""
        return {"seq": self.seq, "kind": self.kind, "time": self.time_s, "data": self.data}
