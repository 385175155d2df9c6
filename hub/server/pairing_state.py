"""The device's pairing state, owned here both ways: the failure count on disk and what it means.

After ``limit`` failed attempts pairing stays refused until someone holds the doorbell button
(:meth:`PairingAttempts.reset`). A missing file means no failures; a damaged one counts as locked
(fail closed), so corrupting the file can never reopen pairing. The file is
``DATA_DIR/pairing-state.json`` = ``{"failures": <int>}``, replaced atomically and fsynced, so a
power cut never forgets a failed attempt. ``serve`` reads it before the API exists (to advertise
the state on the LAN at once); the API's pairing desk then keeps it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from crypto.keys import write_secret_file

__all__ = ["DEFAULT_LIMIT", "STATE_FILE", "PairingAttempts", "PairingState", "pairing_state"]

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 20
STATE_FILE = "pairing-state.json"

PairingState = Literal["open", "closed", "locked"]


def pairing_state(attempts: PairingAttempts, owner_count: int) -> PairingState:
    """What zeroconf advertises: locked past the limit, else open until the first owner pairs."""
    if attempts.locked:
        return "locked"
    return "open" if owner_count == 0 else "closed"


class PairingAttempts:
    """Failed pairing attempts, persisted at ``path`` (see the module docstring)."""

    def __init__(self, path: Path, *, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.path = Path(path)
        self.limit = limit
        self._failures = self._load()

    @classmethod
    def in_dir(cls, data_dir: Path, *, limit: int = DEFAULT_LIMIT) -> PairingAttempts:
        """The device's counter under its data directory."""
        return cls(Path(data_dir) / STATE_FILE, limit=limit)

    @property
    def failures(self) -> int:
        """Attempts counted as failed so far (kept across restarts)."""
        return self._failures

    @property
    def locked(self) -> bool:
        """Whether pairing must be refused until the button is held."""
        return self._failures >= self.limit

    def record_failure(self) -> int:
        """Count one failed (or not yet confirmed) attempt; returns the new count."""
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
        write_secret_file(self.path, json.dumps({"failures": failures}).encode())
        self._failures = failures
