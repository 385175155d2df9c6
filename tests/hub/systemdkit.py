"""A stand-in for systemd's end of NOTIFY_SOCKET: a real datagram socket whose notes a test reads."""

from __future__ import annotations

import queue
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Note:
    at_s: float
    fields: dict[str, str]


class FakeSystemd:
    """The manager's end of NOTIFY_SOCKET (an abstract socket, as systemd's own is)."""

    def __init__(self) -> None:
        self.address = f"@doorward-test-{uuid.uuid4().hex}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + self.address[1:])
        self._sock.settimeout(0.2)
        self.notes: queue.Queue[Note] = queue.Queue()
        self.seen: list[Note] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            self.notes.put(Note(time.monotonic(), fields))

    def next(self, timeout_s: float = 60.0) -> Note:
        note = self.notes.get(timeout=timeout_s)
        self.seen.append(note)
        return note

    def until(self, key: str, pattern: str = ".*", timeout_s: float = 60.0) -> Note:
        """The next note with ``key`` matching ``pattern`` (every note on the way is kept)."""
        deadline = time.monotonic() + timeout_s
        while True:
            note = self.next(max(0.1, deadline - time.monotonic()))
            if key in note.fields and re.fullmatch(pattern, note.fields[key]):
                return note

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
