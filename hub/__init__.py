"""Doorward's network face: the HTTPS API, pairing, events, discovery, the Python client, the CLI.

App developers start with :class:`DoorwardClient`::

    async with DoorwardClient(url, fingerprint=pin, device_id=device, key=keys.signing_key) as api:
        page = await api.clips(camera="front-door")

The names below load on first use, so ``doorward serve`` does not import the client (and the client
does not import the server) just by importing this package.
"""

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.app import HubDeps, create_app
    from hub.client import ApiError, DoorwardClient, EventStreamDropped, pair
    from hub.service import ServeConfig, serve

__all__ = [
    "ApiError",
    "DoorwardClient",
    "EventStreamDropped",
    "HubDeps",
    "ServeConfig",
    "create_app",
    "pair",
    "serve",
]

_HOME = {
    "ApiError": "hub.client",
    "DoorwardClient": "hub.client",
    "EventStreamDropped": "hub.client",
    "pair": "hub.client",
    "HubDeps": "hub.app",
    "create_app": "hub.app",
    "ServeConfig": "hub.service",
    "serve": "hub.service",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'hub' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


logging.getLogger(__name__).addHandler(logging.NullHandler())
