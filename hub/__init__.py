"""Doorward's network face: the HTTPS API, pairing, events, discovery, the Python client, the CLI.

App developers start with :class:`DoorwardClient`::

    async with DoorwardClient(url, fingerprint=pin, device_id=device, key=keys.signing_key) as api:
        page = await api.clips(camera="front-door")
"""

import logging

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

logging.getLogger(__name__).addHandler(logging.NullHandler())
