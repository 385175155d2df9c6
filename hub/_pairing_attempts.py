"""The device's count of failed pairing attempts, kept on disk so a restart does not reset it.

After ``limit`` failures pairing stays refused until someone holds the doorbell button
(:meth:`PairingAttempts.reset`). A missing file means no failures; a damaged one counts as locked
(fail closed), so corrupting the file can never reopen pairing.
File format: ``{"failures": <int>}``, replaced atomically (temp file, fsync, rename).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

__all__ = ["DEFAULT_LIMIT", "PairingAttempts"]

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 20


class PairingAttempts:
    """Failed pairing attempts, persisted at ``path``."""

    def __init__(self, path: Path, *, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.path = Path(path)
        self.limit = limit
        self._failures = self._load()

    @property
    def failures(self) -> int:
        return self._failures

    @property
    def locked(self) -> bool:
        """Whether pairing must be refused until the button is held."""
        return self._failures >= self.limit

    def record_failure(self) -> int:
        """Count one failed (or unconfirmed) attempt; returns the new count."""
        self._store(self._failures + 1)
        if self.locked:
            logger.warning("pairing.locked failures=%s limit=%s", self._failures, self.limit)
        return self._failures

    def reset(self) -> None:
        """Forget all failures: the doorbell button was held, or a pairing was confirmed."""
        self._store(0)
        logger.info("pairing.attempts_reset path=%s", self.path)

    def _load(self) -> int:
        try:
            state = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError):
            logger.error("pairing.attempts_unreadable path=%s", self.path)
            return self.limit
        count = state.get("failures") if isinstance(state, dict) else None
        if type(count) is not int or count < 0:
            logger.error("pairing.attempts_invalid path=%s", self.path)
            return self.limit
        return count

    def _store(self, failures: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        data = json.dumps({"failures": failures}).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._failures = failures
