"""Doorward's network face, one subpackage per side.

- :mod:`hub.server`: the doorbell's HTTPS API, pairing desk, events, live view and ``serve``.
- :mod:`hub.client`: the phone's side: :class:`hub.client.DoorwardClient`, profiles, live viewer.
- :mod:`hub.cli`: the ``doorward`` command line, one module per command group.
- :mod:`hub.wire`: what both sides speak: RFC 9421 signatures, live links, error codes, events,
  zeroconf discovery.

App developers start with the client::

    from hub.client import DoorwardClient

    async with DoorwardClient(url, fingerprint=pin, device_id=device, key=keys.signing_key) as api:
        page = await api.clips(camera="front-door")

The server never imports the client and the client never imports the server (import-linter
contracts in ``pyproject.toml`` check it), so this package itself exports nothing.
"""

import logging

__all__: list[str] = []

logging.getLogger(__name__).addHandler(logging.NullHandler())
