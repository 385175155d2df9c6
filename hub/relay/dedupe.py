"""Each relayed call is handled once, however often its message arrives.

A message can reach the doorbell more than once: MQTT QoS 1 delivers at least once (a broker
that restarts before it saw the doorbell's acknowledgement sends the message again), a phone
that lost its connection publishes the same sealed request again, and whoever runs the broker
can replay a captured message. :class:`AnswerCache` remembers, by the SHA-256 of the sender and
the sealed request, the sealed answer that was published for it: a repeat gets those same bytes
again (which only the original sender can open) and never reaches the API. A repeat that arrives
while the first is still being handled waits for it.

The cache is bounded in bytes and entries are kept for the relay's maximum age; a repeat that
comes after its entry is gone reaches the API, whose replay window refuses the nonce (it is
remembered for the same maximum age) or whose signature check finds it stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

__all__ = ["AnswerCache"]

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_KEEP_S = 1800.0


class AnswerCache:
    """Sealed answers by request digest, oldest evicted first; at most ``max_bytes``."""

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
        self._answers: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._running: dict[bytes, asyncio.Future[bytes | None]] = {}
        self.repeats = 0

    def __len__(self) -> int:
        return len(self._answers)

    @staticmethod
    def key(sender: str, sealed: bytes) -> bytes:
        """The digest a message is known by."""
        return hashlib.sha256(sender.encode() + b"\x00" + sealed).digest()

    async def once(
        self, key: bytes, handle: Callable[[], Awaitable[bytes | None]]
    ) -> tuple[bytes | None, bool]:
        """The answer for ``key``: (the remembered one, True) for a repeat, else (what
        ``handle`` returns, False). None answers (dropped messages) are not remembered."""
        self._expire()
        if (held := self._answers.get(key)) is not None:
            self.repeats += 1
            return held[1], True
        if (running := self._running.get(key)) is not None:
            self.repeats += 1
            return await asyncio.shield(running), True
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            answer = await handle()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: waiting repeats re-raise it themselves
            raise
        finally:
            del self._running[key]
        future.set_result(answer)
        if answer is not None:
            self._remember(key, answer)
        return answer, False

    def _remember(self, key: bytes, answer: bytes) -> None:
        if len(answer) > self.max_bytes:
            return
        self._answers[key] = (self._clock() + self.keep_s, answer)
        self._bytes += len(answer)
        while self._bytes > self.max_bytes:
            _, (_, dropped) = self._answers.popitem(last=False)
            self._bytes -= len(dropped)

    def _expire(self) -> None:
        now = self._clock()
        while self._answers:
            key, (expires, answer) = next(iter(self._answers.items()))
            if expires > now:
                return
            del self._answers[key]
            self._bytes -= len(answer)
