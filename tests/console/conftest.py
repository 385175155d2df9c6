"""The console fixture (``tests.console.consolekit``)."""

from tests.console.consolekit import console

__all__ = ["console"]
