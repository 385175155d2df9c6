"""The sd_notify protocol, spoken directly: one datagram of ``KEY=value`` lines to ``$NOTIFY_SOCKET``.

systemd (``Type=notify``) hands the service an ``AF_UNIX`` datagram socket in ``NOTIFY_SOCKET``: a
path, or an abstract name written with a leading ``@``. Each message is newline-separated
assignments (``READY=1``, ``STATUS=…``, ``WATCHDOG=1``, ``RELOADING=1``, ``STOPPING=1``); see
sd_notify(3). ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, when set, naming this process) asks for a
``WATCHDOG=1`` at least that often. No library is needed, and none is used.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import IO

__all__ = ["Notifier", "monotonic_usec", "notify_message", "under_journal", "watchdog_usec"]

logger = logging.getLogger(__name__)

_MAX_STATUS = 1024  # a STATUS line is for people; keep a datagram well inside any limit


def notify_message(**fields: str | int) -> bytes:
    """``READY=1\\nSTATUS=…`` from keyword fields (names upper-cased), as one datagram.

    A value cannot hold a newline (it would start another assignment): newlines become spaces.
    """
    lines = []
    for name, value in fields.items():
        text = str(value).replace("\n", " ").replace("\r", " ")
        if name.upper() == "STATUS":
            text = text[:_MAX_STATUS]
        lines.append(f"{name.upper()}={text}")
    return "\n".join(lines).encode("utf-8")


def watchdog_usec(environ: Mapping[str, str], pid: int) -> int | None:
    """The watchdog interval systemd asks for (microseconds), or None: unset, not for ``pid``, or
    not a positive integer (then the service runs without pinging, as sd_watchdog_enabled)."""
    text = environ.get("WATCHDOG_USEC")
    if not text:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner and owner != str(pid):
        return None
    try:
        usec = int(text)
    except ValueError:
        logger.warning("sdnotify.bad_watchdog_usec value=%r", text[:32])
        return None
    return usec if usec > 0 else None


def under_journal(environ: Mapping[str, str], stream: IO[str]) -> bool:
    """Whether ``stream`` goes to the journal: ``$JOURNAL_STREAM`` names its device and inode
    (systemd.exec(5)); without it, ``$INVOCATION_ID`` says systemd started us."""
    named = environ.get("JOURNAL_STREAM")
    if named:
        try:
            info = os.fstat(stream.fileno())
        except (OSError, ValueError, AttributeError):
            return False
        return named == f"{info.st_dev}:{info.st_ino}"
    return bool(environ.get("INVOCATION_ID"))


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as ``RELOADING=1`` carries it in ``MONOTONIC_USEC``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends sd_notify messages to the service manager; does nothing where there is none.

    Sending never raises: a manager that went away must not stop the doorbell (a failure is
    logged once). Safe to call from the event loop: the datagram socket is non-blocking.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._socket: socket.socket | None = None
        self._warned = False
        if address is not None and not address.startswith(("/", "@")):
            logger.warning("sdnotify.unsupported_socket address=%s", address[:64])
            self.address = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier for ``$NOTIFY_SOCKET`` (none when unset)."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send one message (``send(READY=1, STATUS="…")``); whether it went out."""
        if self.address is None:
            return False
        target = self.address
        if target.startswith("@"):  # an abstract socket: its name starts with a NUL byte
            target = "\0" + target[1:]
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.setblocking(False)
            self._socket.sendto(notify_message(**fields), target)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logger.warning("sdnotify.send_failed error=%s", exc.strerror or type(exc).__name__)
            return False
        return True

    def close(self) -> None:
        """Close the socket (a later send opens it again)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
