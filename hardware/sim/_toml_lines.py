"""Where each table and key of a TOML text starts, so scenario errors can name the line to fix."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["LineIndex"]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


@dataclass(slots=True)
class LineIndex:
    """1-based line numbers of table headers and keys, by (table, occurrence[, key])."""

    tables: dict[tuple[str, int], int] = field(default_factory=dict)
    keys: dict[tuple[str, int, str], int] = field(default_factory=dict)
    header_forms: dict[str, tuple[bool, int]] = field(
        default_factory=dict
    )  # table -> (is [[ ]], line)

    @classmethod
    def scan(cls, text: str) -> LineIndex:
        """Index a TOML text (best effort: multi-line arrays and strings are skipped over)."""
        index = cls()
        counts: dict[str, int] = {}
        table, occurrence = "", 0
        depth = 0  # open brackets of a multi-line value
        for number, line in enumerate(text.splitlines(), start=1):
            if depth == 0:
                header = _HEADER.match(line)
                if header:
                    is_array = header.group(1) == "[["
                    table = header.group(2)
                    occurrence = counts.get(table, -1) + 1 if is_array else 0
                    counts[table] = occurrence
                    index.tables.setdefault((table, occurrence), number)
                    index.header_forms.setdefault(table, (is_array, number))
                    continue
                key = _KEY.match(line)
                if key:
                    index.keys.setdefault((table, occurrence, key.group(1)), number)
            depth = max(0, depth + _bracket_balance(line))
        return index

    def line_of(self, table: str, occurrence: int, key: str | None = None) -> int | None:
        """The key's line, else its table header's line, else None."""
        if key is not None and (table, occurrence, key) in self.keys:
            return self.keys[(table, occurrence, key)]
        return self.tables.get((table, occurrence))


def _bracket_balance(line: str) -> int:
    """Opening minus closing brackets outside strings and comments."""
    balance = 0
    quote = ""
    for char in line:
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            break
        elif char == "[":
            balance += 1
        elif char == "]":
            balance -= 1
    return balance
