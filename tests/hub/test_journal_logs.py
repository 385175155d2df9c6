"""Under systemd the log goes to the journal: a ``<N>`` priority prefix on every line, one line
per event, INFO state changes included, and the setup code never written there."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hub.cli.logs import JournalFormatter
from tests.hub.systemdkit import FakeSystemd

ROOT = Path(__file__).resolve().parents[2]


def record(level: int, message: str, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("hub.server.serve", level, __file__, 1, message, (), info)


def test_each_level_gets_its_syslog_priority() -> None:
    formatter = JournalFormatter()
    assert formatter.format(record(logging.ERROR, "watchdog.stuck camera=front")) == (
        "<3>hub.server.serve watchdog.stuck camera=front"
    )
    assert formatter.format(record(logging.WARNING, "a")).startswith("<4>")
    assert formatter.format(record(logging.INFO, "a")).startswith("<6>")
    assert formatter.format(record(logging.DEBUG, "a")).startswith("<7>")
    assert formatter.format(record(logging.CRITICAL, "a")).startswith("<2>")


def test_a_traceback_stays_on_the_events_line() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError as exc:
        line = JournalFormatter().format(record(logging.ERROR, "serve.task_failed", exc))
    assert "\n" not in line
    assert line.startswith(
        "<3>hub.server.serve serve.task_failed\\nTraceback (most recent call last):"
    )
    assert "RuntimeError: boom\\nsecond line" in line


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_serve_under_the_journal(tmp_path: Path) -> None:
    scene = tmp_path / "scene.toml"
    scene.write_text("[camera]\nwidth = 320\nheight = 180\nfps = 10\nseconds = 600\nseed = 4\n")
    journal = (tmp_path / "journal.txt").open("w")
    stat = os.fstat(journal.fileno())
    systemd = FakeSystemd()
    env = {k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "WATCHDOG_USEC")}
    env.update(
        JOURNAL_STREAM=f"{stat.st_dev}:{stat.st_ino}",
        NOTIFY_SOCKET=systemd.address,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "hub.cli.main", "serve", "--data", str(tmp_path / "data")),
            *("--camera", f"front=simulated:{scene}", "--host", "127.0.0.1", "--port", "0"),
            "--no-advertise",
        ],
        env=env,
        stdout=journal,
        stderr=journal,
        text=True,
    )
    try:
        systemd.until("READY", "1")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        systemd.close()
        journal.close()
    lines = (tmp_path / "journal.txt").read_text().splitlines()
    code = (tmp_path / "data" / "keys" / "setup-code").read_text().strip()
    text = "\n".join(lines)
    assert code not in text
    assert f"{code[:4]}-{code[4:]}" not in text  # nor its display form
    assert "setup code:" not in text
    logs = [line for line in lines if not line.startswith("doorward: ")]
    assert logs
    assert all(line[:3] in ("<2>", "<3>", "<4>", "<6>", "<7>") for line in logs), logs
    assert any(line.startswith("<6>hub.server.serve serve.ready ") for line in logs)
    assert any(line.startswith("<6>hub.server.watchdog serve.recording ") for line in logs)
    hint = [line for line in lines if line.startswith("doorward: pair a phone")]
    assert hint == [
        f"doorward: pair a phone with the setup code in {tmp_path / 'data' / 'keys' / 'setup-code'} "
        "(readable by the service user only)"
    ]
