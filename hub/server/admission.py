"""Which connections the API keeps: a cap for the whole server, a cap per client address, and
who makes room when the server is full. Pure: the connection guard (``hub.server.guard``) owns
the sockets and passes ``now_s``.

A connection is *untrusted* until a request on it carries a valid owner signature. Untrusted
connections from one address are capped at ``per_address``, except from an address an owner
signed from within the last ``trusted_address_s`` (a phone that opens many connections at
once). When the server holds ``capacity`` connections, a newcomer from such an address takes the
place of the oldest untrusted connection: strangers can keep the server busy but never keep a
known owner out. Any other newcomer does so only if that oldest one has had ``min_age_s`` to
prove itself (and few closes are pending); otherwise it is refused, cheaply, rather than
trading one stranger's handshake for another's.
"""

from __future__ import annotations

import enum
from collections import Counter, OrderedDict
from dataclasses import dataclass

__all__ = ["Admission", "Admitted", "Refusal", "Refused"]

# Owners roam between a few addresses at most; the map of trusted addresses stays small.
MAX_TRUSTED_ADDRESSES = 64
TRUSTED_ADDRESS_S = 3600.0
# Evicted connections whose sockets are not closed yet (asyncio closes them on its next turn).
MAX_CLOSING = 32
# A stranger is evicted for another stranger only after this long without an owner signature.
MIN_AGE_S = 1.0


class Refusal(enum.Enum):
    """Why a connection was refused."""

    PER_ADDRESS = "per_address"  # its address already holds per_address untrusted connections
    FULL = "full"  # the server is full of trusted connections


@dataclass(frozen=True, slots=True)
class Admitted:
    """The connection may stay as ``conn_id``; close ``evicted`` first, if given, to make room."""

    conn_id: int
    evicted: int | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """Close the connection at once."""

    reason: Refusal


class Admission:
    """The bookkeeping of open connections: admit, trust, close and release them.

    A connection counts from :meth:`admit` until :meth:`release` (its socket is closed). One
    being closed (:meth:`close`, or evicted) still counts, since its descriptor is not free yet;
    at most ``max_closing`` may be pending at once, so a flood cannot push the descriptors in use
    past ``capacity + max_closing``.
    """

    def __init__(
        self,
        *,
        capacity: int,
        per_address: int,
        max_closing: int = MAX_CLOSING,
        min_age_s: float = MIN_AGE_S,
        trusted_address_s: float = TRUSTED_ADDRESS_S,
        max_trusted_addresses: int = MAX_TRUSTED_ADDRESSES,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if per_address < 1:
            raise ValueError(f"per_address must be at least 1, got {per_address}")
        self.capacity = capacity
        self.per_address = per_address
        self.max_closing = max_closing
        self.min_age_s = min_age_s
        self._trusted_address_s = trusted_address_s
        self._max_trusted_addresses = max_trusted_addresses
        self._next_id = 0
        # Oldest first: the first untrusted connection is the one a newcomer evicts.
        self._untrusted: OrderedDict[int, str] = OrderedDict()
        self._opened_s: dict[int, float] = {}
        self._trusted: dict[int, str] = {}
        self._closing: dict[int, str | None] = {}  # the address while it counts against it
        self._per_address: Counter[str] = Counter()
        self._trusted_addresses: OrderedDict[str, float] = OrderedDict()  # address -> until

    def __len__(self) -> int:
        return len(self._untrusted) + len(self._trusted) + len(self._closing)

    @property
    def untrusted(self) -> int:
        """Open connections that have not carried an owner's signature (closing ones aside)."""
        return len(self._untrusted)

    @property
    def closing(self) -> int:
        """Connections being closed whose sockets are not released yet."""
        return len(self._closing)

    def untrusted_from(self, address: str) -> int:
        """Connections from ``address`` that count against its cap."""
        return self._per_address[address]

    def admit(self, address: str, *, now_s: float) -> Admitted | Refused:
        """Decide on a new connection from ``address``."""
        owners = self._address_trusted(address, now_s)
        if self._per_address[address] >= self.per_address and not owners:
            return Refused(Refusal.PER_ADDRESS)
        evicted = None
        if len(self) >= self.capacity:
            if not self._untrusted:
                return Refused(Refusal.FULL)
            oldest = next(iter(self._untrusted))
            # A stranger replacing a stranger gains nothing: only one who has had min_age_s to
            # prove itself is evicted for it, and only while few closes are pending. An owner's
            # address always gets its place.
            if not owners and (
                len(self._closing) >= self.max_closing
                or now_s - self._opened_s[oldest] < self.min_age_s
            ):
                return Refused(Refusal.FULL)
            evicted = oldest
            self.close(evicted)
        self._next_id += 1
        conn_id = self._next_id
        self._untrusted[conn_id] = address
        self._opened_s[conn_id] = now_s
        self._per_address[address] += 1
        return Admitted(conn_id, evicted)

    def trust(self, conn_id: int, *, now_s: float) -> None:
        """A request on ``conn_id`` carried a valid owner signature: never evict it, and let its
        address open connections past the per-address cap for a while."""
        address = self._untrusted.pop(conn_id, None)
        if address is not None:
            del self._opened_s[conn_id]
            self._uncount(address)
            self._trusted[conn_id] = address
        else:
            address = self._trusted.get(conn_id)
            if address is None:
                return  # closing or released
        self._trusted_addresses.pop(address, None)
        self._trusted_addresses[address] = now_s + self._trusted_address_s
        while len(self._trusted_addresses) > self._max_trusted_addresses:
            self._trusted_addresses.popitem(last=False)

    def close(self, conn_id: int) -> None:
        """``conn_id`` is being closed: never evict it again; it counts until :meth:`release`."""
        address = self._untrusted.pop(conn_id, None)
        if address is not None:
            del self._opened_s[conn_id]
            self._closing[conn_id] = address
        elif conn_id in self._trusted:
            del self._trusted[conn_id]
            self._closing[conn_id] = None

    def release(self, conn_id: int) -> None:
        """The socket of ``conn_id`` is closed (releasing one twice is harmless)."""
        self.close(conn_id)
        if conn_id in self._closing:
            address = self._closing.pop(conn_id)
            if address is not None:
                self._uncount(address)

    def _uncount(self, address: str) -> None:
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]

    def _address_trusted(self, address: str, now_s: float) -> bool:
        until = self._trusted_addresses.get(address)
        if until is None:
            return False
        if until < now_s:
            del self._trusted_addresses[address]
            return False
        return True
