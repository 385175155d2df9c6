"""Zeroconf: the device advertises ``_doorward._tcp.local.``; phones browse for it.

TXT records (all required, protocol version 1)::

    id=<device id>  name=<display name>  port=<API port>  v=1
    pair=open|closed|locked  fp=<TLS SPKI SHA-256, base64url>

Anyone on the LAN can advertise anything, so a record is only a hint: the phone still checks the
device id and the TLS pin when it connects. Records are parsed strictly and bad ones are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import re
from collections.abc import Awaitable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from zeroconf import (
    DNSQuestion,
    InterfaceChoice,
    IPVersion,
    ServiceStateChange,
    Zeroconf,
    current_time_millis,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from crypto.errors import DoorwardError
from crypto.signed import b64url_decode

__all__ = [
    "PROTOCOL_VERSION",
    "SERVICE_TYPE",
    "Advertiser",
    "DiscoveredDevice",
    "DiscoveryError",
    "Interfaces",
    "NameConflictError",
    "PairingState",
    "browse",
]

logger = logging.getLogger(__name__)

SERVICE_TYPE = "_doorward._tcp.local."
PROTOCOL_VERSION = "1"
PairingState = Literal["open", "closed", "locked"]
Interfaces = Sequence[str] | InterfaceChoice

_PAIRING_STATES = ("open", "closed", "locked")
_TXT_KEYS = frozenset({"id", "name", "port", "v", "pair", "fp"})
_DEVICE_ID = re.compile(r"[a-z2-7]{16}")
_MAX_NAME_BYTES = 63
_RESOLVE_TIMEOUT_MS = 3000
# RFC 6762 §8.1: a random 0-250 ms wait, then three probes 250 ms apart; the name is ours when
# nobody has claimed it 250 ms after the last one.
_PROBE_DELAY_MAX_S = 0.25
_PROBE_INTERVAL_S = 0.25
_PROBES = 3
_DNS_TYPE_ANY = 255  # RFC 1035 QTYPE "*"
_DNS_CLASS_IN = 1
# Names of bad records we have already warned about: a hostile LAN can invent endless names,
# so remember a bounded number and log repeats at DEBUG only.
_MAX_WARNED = 256


class DiscoveryError(DoorwardError, ValueError):
    """A zeroconf record is not a valid Doorward advertisement."""


class NameConflictError(DoorwardError, RuntimeError):
    """Another host on the LAN answers for this device's instance or host name."""


@dataclass(frozen=True, slots=True)
class DiscoveredDevice:
    """One Doorward device as its zeroconf records describe it."""

    device_id: str
    name: str
    port: int
    pairing: PairingState
    fingerprint: str
    addresses: tuple[str, ...] = ()
    version: str = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        if not _DEVICE_ID.fullmatch(self.device_id):
            raise DiscoveryError(
                f"id must be 16 lowercase base32 characters, got {self.device_id[:32]!r}"
            )
        encoded = self.name.encode("utf-8")
        if not encoded or len(encoded) > _MAX_NAME_BYTES or not self.name.isprintable():
            raise DiscoveryError(
                f"name must be 1-{_MAX_NAME_BYTES} bytes of printable text, got {self.name[:64]!r}"
            )
        if isinstance(self.port, bool) or not 0 < self.port < 65536:
            raise DiscoveryError(f"port must be 1-65535, got {self.port!r}")
        if self.pairing not in _PAIRING_STATES:
            raise DiscoveryError(f"pair must be open, closed or locked, got {self.pairing[:16]!r}")
        try:
            fp_ok = len(b64url_decode(self.fingerprint)) == 32
        except ValueError:
            fp_ok = False
        if not fp_ok:
            raise DiscoveryError(
                f"fp must be 43 characters of base64url (SHA-256), got {self.fingerprint[:64]!r}"
            )
        if self.version != PROTOCOL_VERSION:
            raise DiscoveryError(f"v must be {PROTOCOL_VERSION}, got {self.version[:8]!r}")

    @property
    def instance_name(self) -> str:
        """The DNS-SD instance name: unique per device, independent of the display name."""
        return f"doorward-{self.device_id}.{SERVICE_TYPE}"

    def txt(self) -> dict[str, str]:
        """The TXT properties to advertise: ``id``, ``name``, ``port``, ``v``, ``pair``, ``fp``."""
        return {
            "id": self.device_id,
            "name": self.name,
            "port": str(self.port),
            "v": self.version,
            "pair": self.pairing,
            "fp": self.fingerprint,
        }

    @classmethod
    def from_txt(
        cls,
        properties: Mapping[bytes, bytes | None],
        *,
        srv_port: int | None = None,
        addresses: Sequence[str] = (),
    ) -> DiscoveredDevice:
        """Parse TXT properties strictly: exactly the six keys, UTF-8, valid values."""
        fields: dict[str, str] = {}
        for raw_key, raw_value in properties.items():
            try:
                key = raw_key.decode("ascii")
                value = raw_value.decode("utf-8") if raw_value is not None else None
            except UnicodeDecodeError:
                raise DiscoveryError("TXT keys must be ASCII and values UTF-8") from None
            if key not in _TXT_KEYS:
                raise DiscoveryError(f"unknown TXT key {key[:16]!r}")
            if value is None:
                raise DiscoveryError(f"TXT key {key!r} has no value")
            fields[key] = value
        missing = sorted(_TXT_KEYS - set(fields))
        if missing:
            raise DiscoveryError(f"TXT record is missing {', '.join(missing)}")
        if fields["v"] != PROTOCOL_VERSION:
            raise DiscoveryError(f"v must be {PROTOCOL_VERSION}, got {fields['v'][:8]!r}")
        port_text = fields["port"]
        if not (port_text.isascii() and port_text.isdigit()) or port_text.startswith("0"):
            raise DiscoveryError(f"port must be 1-65535, got {port_text[:8]!r}")
        port = int(port_text)
        if srv_port is not None and srv_port != port:
            raise DiscoveryError(f"TXT port {port} does not match the SRV port {srv_port}")
        if fields["pair"] not in _PAIRING_STATES:
            raise DiscoveryError(
                f"pair must be open, closed or locked, got {fields['pair'][:16]!r}"
            )
        return cls(
            device_id=fields["id"],
            name=fields["name"],
            port=port,
            pairing=fields["pair"],  # type: ignore[arg-type]  # checked above
            fingerprint=fields["fp"],
            addresses=tuple(addresses),
        )


def _zeroconf(interfaces: Interfaces) -> AsyncZeroconf:
    if isinstance(interfaces, InterfaceChoice):
        return AsyncZeroconf(interfaces=interfaces)
    versions = {ipaddress.ip_address(a).version for a in interfaces}
    ip_version = {
        frozenset({4}): IPVersion.V4Only,
        frozenset({6}): IPVersion.V6Only,
    }.get(frozenset(versions), IPVersion.All)
    return AsyncZeroconf(interfaces=list(interfaces), ip_version=ip_version)


class Advertiser:
    """Publishes one device's record; ``start`` / ``update`` / ``close`` (or ``async with``)."""

    def __init__(
        self,
        device: DiscoveredDevice,
        *,
        interfaces: Interfaces = InterfaceChoice.All,
        addresses: Sequence[str] | None = None,
    ) -> None:
        if addresses is None:
            if isinstance(interfaces, InterfaceChoice):
                raise ValueError("addresses must be given when interfaces is not a list of IPs")
            addresses = list(interfaces)
        self.device = replace(device, addresses=tuple(addresses))
        self._interfaces = interfaces
        self._zc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._announcing: Awaitable[Any] | None = None

    async def start(self) -> None:
        """Claim the names, then register the service: returns once the record answers queries.

        Probing follows RFC 6762 §8.1 (see :meth:`_probe`) and raises :class:`NameConflictError`
        if another host answers for the names. The announcements (three, 225 ms apart) go on in
        the background, the first at once; ``update`` and ``close`` wait for them first, so a
        change never races with the original records still being broadcast.
        """
        if self._zc is not None:
            raise RuntimeError("Advertiser already started")
        self._zc = _zeroconf(self._interfaces)
        self._info = self._service_info()
        await self._zc.zeroconf.async_wait_for_start()
        await self._probe(self._zc.zeroconf, self._info)
        # Probing is done: zeroconf's own (slower) probe schedule would only repeat it.
        self._announcing = await self._zc.async_register_service(
            self._info, cooperating_responders=True
        )
        logger.info(
            "discovery.advertised device_id=%s port=%s pair=%s",
            self.device.device_id,
            self.device.port,
            self.device.pairing,
        )

    async def _probe(self, zc: Zeroconf, info: AsyncServiceInfo) -> None:
        """RFC 6762 §8.1: after a random 0-250 ms, three QU queries 250 ms apart for the instance
        and host names (type ANY, our records in the authority section); any other answer for
        them, up to 250 ms after the last probe, is a conflict."""
        loop = asyncio.get_running_loop()
        at = loop.time() + random.uniform(0.0, _PROBE_DELAY_MAX_S)  # noqa: S311
        for _ in range(_PROBES):
            await self._wait_unclaimed(zc, info, at)
            zc.async_send(self._probe_query(zc, info))
            at += _PROBE_INTERVAL_S
        await self._wait_unclaimed(zc, info, at)

    async def _wait_unclaimed(self, zc: Zeroconf, info: AsyncServiceInfo, until: float) -> None:
        """Wait until the loop time ``until``, checking for a conflict whenever records arrive."""
        loop = asyncio.get_running_loop()
        while True:
            self._check_unclaimed(zc, info)
            remaining = until - loop.time()
            if remaining <= 0:
                return
            await zc.async_wait(remaining * 1000)  # wakes early when the cache changes

    def _check_unclaimed(self, zc: Zeroconf, info: AsyncServiceInfo) -> None:
        ours = {info.dns_service(), info.dns_text(), *info.dns_addresses()}
        now = current_time_millis()
        claimed = zc.cache.current_entry_with_name_and_alias(info.type, info.name) is not None
        for name in (info.name, info.server or ""):
            claimed = claimed or any(
                record not in ours and not record.is_expired(now)
                for record in zc.cache.entries_with_name(name)
            )
        if claimed:
            raise NameConflictError(
                f"another host on the LAN answers for {info.name} or {info.server}"
            )

    @staticmethod
    def _probe_query(zc: Zeroconf, info: AsyncServiceInfo) -> Any:
        query = zc.generate_service_query(info)  # the type's PTR, QU, our pointer as authority
        for name in (info.name, info.server or ""):
            question = DNSQuestion(name, _DNS_TYPE_ANY, _DNS_CLASS_IN)
            question.unicast = True
            query.add_question(question)
        query.authorities.extend([info.dns_service(), info.dns_text(), *info.dns_addresses()])
        return query

    async def update(self, *, pairing: PairingState | None = None, name: str | None = None) -> None:
        """Change the pairing state or display name and re-announce."""
        if self._zc is None:
            raise RuntimeError("Advertiser not started")
        changes: dict[str, Any] = {}
        if pairing is not None:
            changes["pairing"] = pairing
        if name is not None:
            changes["name"] = name
        await self._announced()
        self.device = replace(self.device, **changes)
        self._info = self._service_info()
        self._announcing = await self._zc.async_update_service(self._info)
        await self._announced()
        logger.info(
            "discovery.updated device_id=%s pair=%s", self.device.device_id, self.device.pairing
        )

    async def close(self) -> None:
        """Withdraw the record and close the sockets; safe to call twice."""
        zc, self._zc = self._zc, None
        if zc is None:
            return
        try:
            await self._announced()
            if self._info is not None:
                await (await zc.async_unregister_service(self._info))
        finally:
            await zc.async_close()
        logger.info("discovery.withdrawn device_id=%s", self.device.device_id)

    async def _announced(self) -> None:
        announcing, self._announcing = self._announcing, None
        if announcing is not None:
            await announcing

    async def __aenter__(self) -> Advertiser:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _service_info(self) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            SERVICE_TYPE,
            self.device.instance_name,
            port=self.device.port,
            properties=self.device.txt(),
            server=f"doorward-{self.device.device_id}.local.",
            parsed_addresses=list(self.device.addresses),
        )


async def browse(
    timeout_s: float,
    *,
    interfaces: Interfaces = InterfaceChoice.All,
    until_found: Collection[str] = (),
) -> list[DiscoveredDevice]:
    """Devices seen within ``timeout_s``, sorted by name; returns early once every device id in
    ``until_found`` is resolved. Invalid advertisements are skipped (and logged)."""
    found: dict[str, DiscoveredDevice] = {}
    wanted = set(until_found)
    done = asyncio.Event()
    warned: set[str] = set()
    tasks: set[asyncio.Task[None]] = set()
    zc = _zeroconf(interfaces)

    async def resolve(name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(zc.zeroconf, _RESOLVE_TIMEOUT_MS):
            logger.debug("discovery.unresolved name=%s", name)
            return
        try:
            device = DiscoveredDevice.from_txt(
                info.properties, srv_port=info.port, addresses=info.parsed_addresses()
            )
        except DiscoveryError as exc:
            level = logging.DEBUG if name in warned else logging.WARNING
            if len(warned) < _MAX_WARNED:
                warned.add(name)
            logger.log(level, "discovery.bad_record name=%s reason=%s", name, exc)
            return
        found[device.device_id] = device
        if wanted and wanted <= found.keys():
            done.set()

    def on_change(
        zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            task = asyncio.ensure_future(resolve(name))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    browser = AsyncServiceBrowser(zc.zeroconf, SERVICE_TYPE, handlers=[on_change])
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout_s)
    finally:
        await browser.async_cancel()
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):
                logger.error("discovery.resolve_failed error=%r", result)
        await zc.async_close()
    return sorted(found.values(), key=lambda d: (d.name, d.device_id))
