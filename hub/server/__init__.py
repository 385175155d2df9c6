"""The doorbell's side of the hub: the HTTPS API application and ``doorward serve``.

- :func:`hub.server.app.create_app` builds the API for a :class:`hub.server.deps.HubDeps`.
- :func:`hub.server.serve.serve` runs the device; :mod:`hub.server.config` holds its options.

This package imports nothing itself: ``doorward serve`` starts advertising on the LAN before it
loads the API and the pipelines (see :mod:`hub.server.serve`).
"""

__all__: list[str] = []
