"""Where the ``doorward`` command's log lines go, and how they look.

On a terminal (or a file): ``time LEVEL logger event key=value``. Under systemd, whose journal
reads stderr, every line starts with its syslog priority as ``<N>`` (sd-daemon(3): journald
stores it as the entry's priority, so ``journalctl -p warning`` works), without a time stamp
(the journal keeps one), and an event stays one line: a traceback's newlines are written as
``\\n``, so one event is one journal entry.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import IO

from hub.server.sdnotify import under_journal

__all__ = ["JournalFormatter", "configure_logging"]

_TERMINAL_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_JOURNAL_FORMAT = "%(name)s %(message)s"


class JournalFormatter(logging.Formatter):
    """``<N>logger event key=value`` on one line, N the record's syslog priority."""

    def __init__(self) -> None:
        super().__init__(_JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one journal line with its priority prefix."""
        text = super().format(record)
        return f"<{_priority(record.levelno)}>" + text.replace("\r", "").replace("\n", "\\n")


def configure_logging(
    level: int,
    *,
    service: bool = False,
    environ: Mapping[str, str] | None = None,
    stream: IO[str] | None = None,
) -> bool:
    """Log at ``level`` to ``stream`` (stderr), in the journal's format under systemd (where a
    ``service`` logs at least INFO, so its state changes reach the journal); whether the journal
    format is on."""
    env = os.environ if environ is None else environ
    out = stream or sys.stderr
    journal = under_journal(env, out)
    handler = logging.StreamHandler(out)
    handler.setFormatter(JournalFormatter() if journal else logging.Formatter(_TERMINAL_FORMAT))
    root = logging.getLogger()
    if not root.handlers:  # as basicConfig: a caller's own configuration wins
        root.addHandler(handler)
        root.setLevel(min(level, logging.INFO) if journal and service else level)
    return journal


def _priority(levelno: int) -> int:
    """syslog(3) priority of a logging level: 2 crit, 3 err, 4 warning, 6 info, 7 debug."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7
