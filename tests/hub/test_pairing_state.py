"""The on-disk pairing failure counter: locks at the limit, survives restarts, fails closed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from hub.server.pairing_state import PairingAttempts


def test_twenty_failures_lock_pairing_even_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "pairing-attempts.json"
    attempts = PairingAttempts(path)
    assert (attempts.failures, attempts.locked) == (0, False)
    for expected in range(1, 20):
        assert attempts.record_failure() == expected
    assert not attempts.locked
    assert PairingAttempts(path).failures == 19  # every failure is on disk at once
    assert attempts.record_failure() == 20
    assert attempts.locked
    reopened = PairingAttempts(path)
    assert (reopened.failures, reopened.locked) == (20, True)
    assert json.loads(path.read_text()) == {"failures": 20}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairing-attempts.json"]


def test_reset_unlocks_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "state" / "attempts.json"
    attempts = PairingAttempts(path, limit=2)
    attempts.record_failure()
    attempts.record_failure()
    assert attempts.locked
    attempts.reset()
    assert not attempts.locked
    assert PairingAttempts(path, limit=2).failures == 0
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"[]",
        b'{"failures": -1}',
        b'{"failures": "3"}',
        b'{"failures": true}',
        b'{"other": 1}',
        b"\xff\xfe",
    ],
)
def test_a_damaged_file_counts_as_locked(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "attempts.json"
    path.write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="hub.server.pairing_state"):
        attempts = PairingAttempts(path)
    assert attempts.locked
    assert caplog.records[0].getMessage().startswith("pairing.attempts_")
    attempts.reset()
    assert PairingAttempts(path).failures == 0


def test_limit_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^limit must be at least 1, got 0$"):
        PairingAttempts(tmp_path / "a.json", limit=0)
