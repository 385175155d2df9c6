"""The owner's console: a local web app (127.0.0.1 only) over the owner's profile and keys."""

from hub.console._api import ConsoleState
from hub.console._guard import Gate
from hub.console.app import create_app, new_gate, serve

__all__ = ["ConsoleState", "Gate", "create_app", "new_gate", "serve"]
