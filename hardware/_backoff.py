"""Reconnect delays: exponential backoff with a cap and optional jitter, as a pure function."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before reconnect attempt ``n`` (0-based): ``initial_s * factor**n``, capped at
    ``max_s``, then spread by ``±jitter`` (a fraction) using a uniform draw ``rand`` in [0, 1)."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not self.initial_s > 0:
            raise ValueError(f"initial_s must be > 0, got {self.initial_s}")
        if not self.factor >= 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if not self.max_s >= self.initial_s:
            raise ValueError(f"max_s must be >= initial_s ({self.initial_s}), got {self.max_s}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def delay_s(self, attempt: int, rand: float = 0.5) -> float:
        """Seconds to wait before attempt ``attempt``; ``rand=0.5`` gives the un-jittered delay."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        if not 0 <= rand <= 1:
            raise ValueError(f"rand must be in [0, 1], got {rand}")
        # Cap the exponent first so huge attempt numbers cannot overflow.
        base = self.initial_s
        for _ in range(attempt):
            base *= self.factor
            if base >= self.max_s:
                base = self.max_s
                break
        return base * (1 + self.jitter * (2 * rand - 1))
