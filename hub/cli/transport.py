"""How a ``doorward owner …`` or ``doorward requester …`` command reaches its device: on the LAN
(HTTPS pinned to the device's TLS key) or through the relay broker (the same signed request,
sealed to the device's relay key), chosen by ``--via``.

``auto`` (the default) uses the LAN when the device's LAN address accepts a connection within
:data:`LAN_PROBE_S`, else the relay when the profile can use it (a relay login, and the device's
relay key and relay URL pinned). When the relay is not usable, auto is the LAN as before, without
a probe. Whenever the relay was possible, one line on standard error says which way was taken.
A device pinned from its request address has no LAN address: it is reached through the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from crypto.errors import DoorwardError
from hub.client import DoorwardClient
from hub.client.profile import PinnedDevice, RelayAccount

if TYPE_CHECKING:
    from hub.relay.client import RelayTransport

__all__ = ["LAN_PROBE_S", "VIA", "DeviceConnection", "NoRoute"]

VIA: tuple[str, ...] = ("auto", "lan", "relay")
LAN_PROBE_S = 3.0  # a LAN address that has not accepted a connection by then is taken as away
RELAY_CALL_TIMEOUT_S = 30.0


class NoRoute(DoorwardError):
    """The device cannot be reached the way asked: the message says what is missing."""


class DeviceConnection:
    """``async with`` it for a :class:`DoorwardClient` on the transport ``via`` picks."""

    def __init__(
        self,
        device: PinnedDevice,
        key: Any,
        *,
        via: str = "auto",
        account: RelayAccount | None = None,
        login_hint: str = "relay login",
        lan_only: str | None = None,
        probe_s: float = LAN_PROBE_S,
        identity: Any = None,
    ) -> None:
        """``identity`` (an owner's age identity) lets the relay transport receive the owner's
        events (``DoorwardClient.events()`` through the relay)."""
        if via not in VIA:
            raise NoRoute(f"--via must be one of {', '.join(VIA)}, got {via!r}")
        self.device, self._key, self.via = device, key, via
        self._account, self._hint, self._lan_only = account, login_hint, lan_only
        self._probe_s = probe_s
        self._identity = identity
        self._client: DoorwardClient | None = None
        self._transport: RelayTransport | None = None
        self.used: str | None = None  # "lan" or "relay", once entered

    async def __aenter__(self) -> DoorwardClient:
        way = await self._choose()
        self.used = way
        if way == "lan":
            self._client = DoorwardClient(
                self.device.url,
                fingerprint=self.device.fingerprint,
                device_id=self.device.device_id,
                key=self._key,
            )
            return self._client
        self._transport = await self._open_relay()
        self._client = DoorwardClient(
            self.device.url or _relay_base_url(self.device.device_id),
            fingerprint=self.device.fingerprint,
            device_id=self.device.device_id,
            key=self._key,
            relay=self._transport,
        )
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        client, transport = self._client, self._transport
        self._client = self._transport = None
        if client is not None:
            await client.close()
        if transport is not None:
            await transport.close()

    # -- choosing ---------------------------------------------------------------------------

    def relay_missing(self) -> str | None:
        """Why the relay cannot be used for this device, or None when it can."""
        device = self.device
        if device.relay_key_config is None:
            return (
                f"no relay key is pinned for device {device.device_id}: pair again (or run "
                "'doorward owner relay refresh' on the LAN), or ask with its request address"
            )
        if self._account is None:
            return f"this profile has no relay login: run '{self._hint}'"
        if self._relay_url() is None:
            return (
                f"no relay URL is known for device {device.device_id}: give it with "
                f"'{self._hint} --url mqtts://HOST:PORT'"
            )
        return None

    async def _choose(self) -> str:
        device = self.device
        if self.via == "lan":
            if not device.url:
                raise NoRoute(
                    f"device {device.device_id} was pinned from its request address and has no "
                    "LAN address: use --via relay (or auto)"
                )
            return "lan"
        missing = self.relay_missing()
        if self.via == "relay":
            if self._lan_only:
                raise NoRoute(f"{self._lan_only} does not go through the relay yet: use --via lan")
            if missing:
                raise NoRoute(f"cannot use the relay: {missing}")
            return "relay"
        # auto
        if self._lan_only or missing:
            if not device.url:
                raise NoRoute(
                    f"device {device.device_id} has no LAN address and "
                    + (
                        f"{self._lan_only} does not go through the relay yet"
                        if self._lan_only
                        else f"the relay cannot be used: {missing}"
                    )
                )
            return "lan"
        if device.url and await lan_answers(device.url, self._probe_s):
            _say(f"via LAN ({device.url})")
            return "lan"
        if device.url:
            _say(
                f"the LAN address {device.url} did not answer; via the relay ({self._relay_url()})"
            )
        return "relay"

    def _relay_url(self) -> str | None:
        account_url = self._account.url if self._account else None
        return self.device.relay_url or account_url

    async def _open_relay(self) -> RelayTransport:
        from crypto.keys import key_id  # only a command that uses the relay loads the MQTT client
        from hub.relay.client import RelayCallFailed, RelayLoginFailed, RelayTransport
        from hub.relay.device import RelayError, parse_relay_url

        assert self._account is not None
        assert self.device.relay_key_config is not None
        url = self._relay_url()
        assert url is not None
        if self.via == "relay" or not self.device.url:
            _say(f"via the relay ({url})")
        try:
            host, port = parse_relay_url(url)
        except RelayError as exc:
            raise NoRoute(str(exc)) from None
        client_id = key_id(self._key.public_key())
        try:
            transport = RelayTransport(
                host=host,
                port=port,
                tls=self._account.tls_context(),
                client_id=client_id,
                password=self._account.password(),
                device_id=self.device.device_id,
                key_config=self.device.relay_key_config,
                timeout_s=RELAY_CALL_TIMEOUT_S,
                identity=self._identity,
            )
        except RelayCallFailed as exc:
            raise NoRoute(str(exc)) from None
        try:
            await transport.connect()
        except RelayLoginFailed as exc:
            await transport.close()
            raise NoRoute(
                f"cannot log in to the relay at {url} as {client_id} ({exc.reason}): check the "
                f"relay's address, its CA and the password its operator gave for this client id "
                f"('{self._hint}')"
            ) from None
        return transport


async def lan_answers(url: str, timeout_s: float) -> bool:
    """Whether the LAN address in ``url`` accepts a TCP connection within ``timeout_s``."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    try:
        port = parts.port or 443
    except ValueError:
        return False
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(parts.hostname, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _relay_base_url(device_id: str) -> str:
    from hub.relay.address import relay_base_url

    return relay_base_url(device_id)


def _say(line: str) -> None:
    print(f"doorward: {line}", file=sys.stderr)
