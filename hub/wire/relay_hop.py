"""The hop from the device's relay connection to its own API, and how the API recognises it.

The relay connection (``hub.relay.device``) opens each sealed call and sends the signed request
inside to the device's own API over loopback HTTPS. Two header fields tell the API that a call
came through the relay, and from which broker client:

- ``doorward-relay-hop``: a token derived from the device's relay private key (HMAC-SHA256 under
  a fixed label), which only the device's own process can compute. A loopback caller that does
  not hold the relay key cannot pass a call off as relayed.
- ``doorward-relay-client``: the broker login (client id) that published the call. The broker's
  ACL lets a client write only to its own inbox topic, so this is who sent it.

With both, the API counts the call's per-address limits against ``relay:<client id>`` instead
of 127.0.0.1, and accepts a signature that waited at the broker for up to the relay's maximum
age (a doorbell offline for minutes still gets the calls queued for it), with the nonce
remembered as long. Neither field may arrive from the relayed request itself: the relay
connection removes them before adding its own.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from hub.wire.ohttp import GatewayKey

__all__ = ["HOP_CLIENT", "HOP_FIELDS", "HOP_TOKEN", "hop_token", "valid_client_id"]

HOP_TOKEN = "doorward-relay-hop"  # noqa: S105 - a header field name
HOP_CLIENT = "doorward-relay-client"
HOP_FIELDS = frozenset({HOP_TOKEN, HOP_CLIENT})
_LABEL = b"doorward relay hop v1"
# A broker client id is one MQTT topic level: the relay's names are key ids (base64url).
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def hop_token(key: GatewayKey) -> str:
    """The token the relay connection sends with every relayed call (hex; never logged)."""
    return hmac.new(key.private_bytes(), _LABEL, hashlib.sha256).hexdigest()


def valid_client_id(value: str) -> bool:
    """Whether ``value`` can be a broker client id (one topic level of letters, digits, - _)."""
    return _CLIENT_ID.fullmatch(value) is not None
