"""Each relayed call is handled once, however often its message arrives.

A message can reach the doorbell more than once: MQTT QoS 1 delivers at least once (a broker
that restarts before it saw the doorbell's acknowledgement sends the message again), a phone
that lost its connection publishes the same sealed request again, and whoever runs the broker
can replay a captured message. :class:`AnswerCache` remembers, by the SHA-256 of the sender and
the sealed request, the messages that were published as the answer when it was small enough to
go whole (one message): a repeat gets those same bytes again (which only the original sender can
open) and never reaches the API.

The cache is bounded in bytes and entries are kept for the relay's maximum age; a repeat that
comes after its entry is gone, or of an answer that went in many chunks, reaches the API, whose
replay window refuses the nonce (it is remembered for the same maximum age) or whose signature
check finds it stale.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["AnswerCache", "Held"]

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_KEEP_S = 1800.0

# An answer as published: each message's payload, content type and sequence number (or None).
Held = tuple[tuple[bytes, str | None, str | None], ...]


class AnswerCache:
    """Published answers by request digest, oldest evicted first; at most ``max_bytes``."""

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep_s: float = DEFAULT_KEEP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.keep_s = keep_s
        self._clock = clock
        self._answers: OrderedDict[bytes, tuple[float, Held, int]] = OrderedDict()
        self._bytes = 0
        self.repeats = 0

    def __len__(self) -> int:
        return len(self._answers)

    @staticmethod
    def key(sender: str, sealed: bytes) -> bytes:
        """The digest a message is known by."""
        return hashlib.sha256(sender.encode() + b"\x00" + sealed).digest()

    def get(self, key: bytes) -> Held | None:
        """The answer published for ``key``, if it is remembered (a repeat, counted)."""
        self._expire()
        held = self._answers.get(key)
        if held is None:
            return None
        self.repeats += 1
        return held[1]

    def put(self, key: bytes, answer: Held) -> None:
        """Remember ``answer`` as what was published for ``key``."""
        size = sum(len(payload) for payload, _, _ in answer)
        if size > self.max_bytes or key in self._answers:
            return
        self._answers[key] = (self._clock() + self.keep_s, answer, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, _, dropped) = self._answers.popitem(last=False)
            self._bytes -= dropped

    def _expire(self) -> None:
        now = self._clock()
        while self._answers:
            key, (expires, _, size) = next(iter(self._answers.items()))
            if expires > now:
                return
            del self._answers[key]
            self._bytes -= size
