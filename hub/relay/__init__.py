"""Doorward's relay: requests, responses and events through an MQTT 5 broker nobody has to trust.

- :mod:`hub.relay.broker`: a Mosquitto broker on loopback with the shipped configuration
  (``hub/relay/mosquitto/``), for tests and ``doorward demo``.
"""

__all__: list[str] = []
