"""How many requests one requester key, or one client address, may hold on the device.

Requester keys cost nothing to mint, so the device's 500 pending slots would be a flood's to take
if it counted only per key. It also counts per client address: IPv4 addresses whole, IPv6 by /64
(one host usually holds a whole /64, so counting single IPv6 addresses would stop nothing). Stored
requests are counted over a day, whatever became of them: each one adds audit entries.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields

__all__ = ["DAY_S", "RequestLimits", "address_group"]

DAY_S = 86400
_IPV6_PREFIX = 64
_MAX_ADDRESS_CHARS = 64


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """Caps on the requests the device holds, overall and per requester key and client address."""

    max_pending: int = 500  # pending requests from everyone
    max_pending_per_key: int = 5
    max_pending_per_address: int = 20
    max_per_key_per_day: int = 50  # requests stored (any status) in the last 24 h
    max_per_address_per_day: int = 200
    # Past this many refusals in one period, a key's or address's refusals are counted and
    # summarised once per period in the audit log and the log, not recorded one by one.
    quiet_after: int = 10
    summary_period_s: int = 3600

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{f.name} must be a positive integer, got {value!r}")


def address_group(address: str | None) -> str | None:
    """The unit a client address is counted in: the IPv4 address, or the IPv6 /64 prefix."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:_MAX_ADDRESS_CHARS]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, _IPV6_PREFIX), strict=False))
    return str(ip)
