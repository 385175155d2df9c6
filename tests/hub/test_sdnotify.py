"""sd_notify spoken directly (hub.server.sdnotify): datagrams as systemd receives them."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.server.sdnotify import Notifier, notify_message, watchdog_usec


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def test_a_message_reaches_a_path_socket(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.send(READY=1, STATUS="front recording")
    assert sock.recv(4096) == b"READY=1\nSTATUS=front recording"
    notifier.close()


def test_a_message_reaches_an_abstract_socket() -> None:
    name = f"doorward-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        notifier = Notifier(f"@{name}")
        assert notifier.send(WATCHDOG=1)
        assert sock.recv(4096) == b"WATCHDOG=1"
        notifier.close()
    finally:
        sock.close()


def test_a_newline_in_a_value_cannot_inject_another_assignment() -> None:
    assert notify_message(status="bad\nREADY=1") == b"STATUS=bad READY=1"


def test_without_a_manager_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert not Notifier.from_environ({}).send(READY=1)
    gone = Notifier(str(tmp_path / "nobody-listens.sock"))
    assert not gone.send(READY=1)  # logged once, never raised
    assert not Notifier("relative/path").enabled


def test_the_watchdog_interval_is_for_this_process_only() -> None:
    assert watchdog_usec({"WATCHDOG_USEC": "30000000"}, 42) == 30_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 30_000_000
    assert watchdog_usec({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "41"}, 42) is None
    assert watchdog_usec({"WATCHDOG_USEC": "soon"}, 42) is None
    assert watchdog_usec({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_usec({}, 42) is None
