"""Counting refusals per requester key and client address, so a flood cannot flood the record too.

Each refusal is an audit entry and a log line, until one subject (a key, or an address group) has
been refused ``threshold`` times in the current period; from then on its refusals are only counted,
and once the period is over the count becomes one summary. Pure: the caller passes ``now``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MAX_SUBJECTS", "RefusalCounter", "RefusalSummary"]

# Keys are free to mint: the map is bounded, and a subject pushed out by newer ones is summarised
# at once rather than forgotten.
MAX_SUBJECTS = 4096


@dataclass(frozen=True, slots=True)
class RefusalSummary:
    """``count`` refusals of ``subject`` (``kind`` ``key`` or ``address``) not recorded one by
    one, between ``since`` and ``until`` (seconds since 1970)."""

    kind: str
    subject: str
    count: int
    since: int
    until: int


class _Window:
    __slots__ = ("quiet", "seen", "since")

    def __init__(self, since: int) -> None:
        self.since = since
        self.seen = 0
        self.quiet = 0


class RefusalCounter:
    """Per-subject refusal counts over periods; see the module doc."""

    def __init__(self, *, max_subjects: int = MAX_SUBJECTS) -> None:
        self._max_subjects = max_subjects
        self._windows: OrderedDict[tuple[str, str], _Window] = OrderedDict()
        self._ready: list[RefusalSummary] = []

    def refuse(
        self, subjects: Sequence[tuple[str, str]], now: int, *, threshold: int, period_s: int
    ) -> bool:
        """Count one refusal of each subject; True if it is to be recorded on its own."""
        record = True
        for subject in subjects:
            window = self._window(subject, now, period_s)
            window.seen += 1
            if window.seen > threshold:
                window.quiet += 1
                record = False
        return record

    def due(self, now: int, *, period_s: int) -> list[RefusalSummary]:
        """Summaries of the periods that have ended (and of subjects pushed out), once each."""
        for subject, window in list(self._windows.items()):
            if now - window.since >= period_s:
                self._close(subject, window, now)
                del self._windows[subject]
        ready, self._ready = self._ready, []
        return ready

    def quiet(self, subject: tuple[str, str]) -> int:
        """How many refusals of ``subject`` the current period has only counted."""
        window = self._windows.get(subject)
        return 0 if window is None else window.quiet

    def _window(self, subject: tuple[str, str], now: int, period_s: int) -> _Window:
        window = self._windows.get(subject)
        if window is not None and now - window.since >= period_s:
            self._close(subject, window, now)
            del self._windows[subject]
            window = None
        if window is None:
            window = _Window(now)
            self._windows[subject] = window
            if len(self._windows) > self._max_subjects:
                old_subject, old = self._windows.popitem(last=False)
                self._close(old_subject, old, now)
        else:
            self._windows.move_to_end(subject)
        return window

    def _close(self, subject: tuple[str, str], window: _Window, now: int) -> None:
        if window.quiet:
            kind, name = subject
            self._ready.append(RefusalSummary(kind, name, window.quiet, window.since, now))
