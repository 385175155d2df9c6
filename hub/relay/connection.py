"""What the doorbell's and the phone's MQTT connections to the relay share: socket options and
the reconnect back-off."""

from __future__ import annotations

import random
import socket

__all__ = ["DEVICE_RETRY_S", "NO_DELAY", "backoff_s"]

# Calls, answers, chunks and their acknowledgements are small packets: without TCP_NODELAY,
# Nagle's algorithm holds each one back until the previous packet is acknowledged, and delayed
# ACKs on the other side make that ~40 ms a hop (paho leaves the socket as it is).
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
DEVICE_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)
_JITTER = random.SystemRandom()


def backoff_s(attempt: int, steps: tuple[float, ...] = DEVICE_RETRY_S) -> float:
    """How long to wait before reconnect ``attempt`` (0 first): the step for it, spread over
    half to one and a half times itself, so that doorbells cut off together by a broker restart
    do not all log in again in the same second (a login costs the broker a TLS handshake)."""
    step = steps[min(attempt, len(steps) - 1)]
    return step * _JITTER.uniform(0.5, 1.5)
