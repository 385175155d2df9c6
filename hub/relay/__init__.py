"""Doorward's relay: requests, responses and events through an MQTT 5 broker nobody has to trust.

- :mod:`hub.relay.broker`: a Mosquitto broker on loopback with the shipped configuration
  (``hub/relay/mosquitto/``), for tests and ``doorward demo``.
- :mod:`hub.relay.device`: the doorbell answers sealed API calls from the broker through its own API.
- :mod:`hub.relay.events`: the doorbell's events, one age-encrypted copy per owner.
- :mod:`hub.relay.client`: a relay transport for ``DoorwardClient`` (and an owner's events).
- :mod:`hub.relay.address`: the request address (``doorward+mqtts://…``) owners give requesters.
- :mod:`hub.relay.homeassistant`: the optional Home Assistant role, a second connection to the
  home's own broker with MQTT discovery (its messages: :mod:`hub.relay.ha_discovery`).
"""

__all__: list[str] = []
