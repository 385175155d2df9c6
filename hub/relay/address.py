"""The request address: what an owner hands a requester so that they can ask a doorbell for
footage through the relay, as a URI (and its QR code)::

    doorward+mqtts://relay.example.net:8884/<device-id>?v=1&key=<ed25519>&relay_key=<key config>

- the authority is the relay broker's listener for phones and requesters (``mqtts://``, TLS);
- the path is the device id, which must be the id of ``key``;
- ``key`` is the device's Ed25519 signing key (unpadded base64url): it signs clip manifests,
  audit checkpoints and releases, and its SPKI fingerprint is the device's TLS pin;
- ``relay_key`` is the device's relay key configuration (RFC 9458 §3, unpadded base64url), the
  key requests through the relay are sealed to.

The address is not a secret: it says where a doorbell can be asked and checks what answers. A
request sent with it still passes the owner's policy and needs the owner's signed consent, like
any other. :meth:`RequestAddress.parse` refuses anything but exactly these parts, with an error
that names the part at fault.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from crypto.errors import DoorwardError
from crypto.keys import device_id as device_id_of
from crypto.signed import b64url, b64url_decode
from crypto.tls import spki_fingerprint
from hub.wire import ohttp
from hub.wire.relay_keys import RelayKeys

__all__ = ["SCHEME", "AddressError", "RequestAddress", "relay_base_url"]

SCHEME = "doorward+mqtts"
VERSION = "1"
MAX_ADDRESS_CHARS = 4096  # a hybrid key configuration would be ~1.6 KB in base64url
DEFAULT_PORT = 8884  # the shipped broker's listener for phones and requesters
_DEVICE_ID = re.compile(r"^[a-z2-7]{16}$")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_FIELDS = ("v", "key", "relay_key")


class AddressError(DoorwardError, ValueError):
    """A request address is malformed or inconsistent: the message names the part at fault."""


def relay_base_url(device_id: str) -> str:
    """The URL requests to a device known only by its request address are signed for: a host
    under ``.invalid`` (RFC 6761), which never resolves, so such a request never goes to a LAN."""
    return f"https://{device_id}.relay.invalid"


@dataclass(frozen=True, slots=True, eq=False)
class RequestAddress:
    """A doorbell's request address: device id, relay URL, signing key, relay key config."""

    device_id: str
    relay_url: str
    signing_key: Ed25519PublicKey
    key_config: bytes

    def __post_init__(self) -> None:
        _check_device_id(self.device_id)
        if device_id_of(self.signing_key) != self.device_id:
            raise AddressError(
                f"the device id {self.device_id} is not the id of the signing key in the address "
                f"(that key's id is {device_id_of(self.signing_key)}): the address was altered "
                "or put together from two devices; ask the owner for it again"
            )
        object.__setattr__(self, "relay_url", _url(*_relay_host_port(self.relay_url)))
        try:
            RelayKeys.parse(self.key_config)
        except ohttp.OhttpError as exc:
            raise AddressError(
                f"relay_key is not a usable relay key configuration: {exc}"
            ) from None

    @classmethod
    def parse(cls, text: str) -> RequestAddress:
        """Read a ``doorward+mqtts://`` URI; raises AddressError naming the bad part."""
        if not isinstance(text, str):
            raise AddressError("a request address must be text")
        text = text.strip()
        if len(text) > MAX_ADDRESS_CHARS:
            raise AddressError(
                f"a request address is at most {MAX_ADDRESS_CHARS} characters, got {len(text)}"
            )
        if not text.isascii() or not text.isprintable() or " " in text:
            raise AddressError("a request address holds no spaces, control or non-ASCII characters")
        scheme, sep, _ = text.partition("://")
        if not sep or scheme.lower() != SCHEME:
            raise AddressError(
                f"a request address begins with {SCHEME}://, got {text[:24]!r}; the owner "
                "prints one with 'doorward owner share-address'"
            )
        rest = text[len(scheme) + 3 :]
        if "#" in rest:
            raise AddressError("a request address has no #fragment")
        location, _, query = rest.partition("?")
        netloc, _, device = location.partition("/")
        if "@" in netloc:
            raise AddressError(
                "a request address holds no login (user@): the relay's password is given with "
                "'doorward requester relay login'"
            )
        host, port = _host_port(netloc)
        _check_device_id(device)
        fields = _query(query)
        if fields["v"] != VERSION:
            raise AddressError(
                f"request address version {fields['v'][:8]!r} is not supported (only {VERSION}); "
                "update doorward"
            )
        try:
            raw_key = b64url_decode(fields["key"])
            signing_key = Ed25519PublicKey.from_public_bytes(raw_key)
        except ValueError:
            raise AddressError(
                "key must be the device's 32-byte Ed25519 key in base64url"
            ) from None
        try:
            key_config = b64url_decode(fields["relay_key"])
        except ValueError:
            raise AddressError("relay_key must be base64url") from None
        return cls(device, _url(host, port), signing_key, key_config)

    def to_uri(self) -> str:
        """The address as a URI (canonical: parsing it gives this address back)."""
        host, port = _relay_host_port(self.relay_url)
        key = b64url(self.signing_key.public_bytes_raw())
        return (
            f"{SCHEME}://{_netloc(host, port)}/{self.device_id}"
            f"?v={VERSION}&key={key}&relay_key={b64url(self.key_config)}"
        )

    def __str__(self) -> str:
        return self.to_uri()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RequestAddress) and self.to_uri() == other.to_uri()

    def __hash__(self) -> int:
        return hash(self.to_uri())

    def __repr__(self) -> str:
        return f"RequestAddress(device_id={self.device_id!r}, relay_url={self.relay_url!r})"

    @property
    def fingerprint(self) -> str:
        """The device's TLS pin (the SPKI fingerprint of its signing key)."""
        return spki_fingerprint(self.signing_key)

    @property
    def host(self) -> str:
        """The relay broker's host name or address."""
        return _relay_host_port(self.relay_url)[0]

    @property
    def port(self) -> int:
        """The relay broker's port for phones and requesters."""
        return _relay_host_port(self.relay_url)[1]


def _check_device_id(device: str) -> None:
    if not isinstance(device, str) or not _DEVICE_ID.match(device):
        raise AddressError(
            f"the device id (the path) must be 16 characters of a-z and 2-7, got {device[:24]!r}"
        )


def _query(query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise AddressError(
            f"the query must be name=value pairs joined by &, got {query[:40]!r}"
        ) from None
    names = [name for name, _ in pairs]
    unknown = sorted(set(names) - set(_FIELDS))
    if unknown:
        raise AddressError(
            f"unknown field(s) {', '.join(n[:16] for n in unknown)}; a request address holds "
            f"{', '.join(_FIELDS)}"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise AddressError(f"field(s) {', '.join(repeated)} appear more than once")
    missing = [n for n in _FIELDS if n not in names]
    if missing:
        raise AddressError(f"the request address lacks {' and '.join(missing)}")
    return dict(pairs)


def _host_port(netloc: str) -> tuple[str, int]:
    """``HOST[:PORT]`` of the authority, checked (a DNS name, IPv4 or bracketed IPv6)."""
    if netloc.startswith("["):
        inside, bracket, rest = netloc[1:].partition("]")
        if not bracket:
            raise AddressError("the relay host's IPv6 address lacks its closing ]")
        try:
            host = str(ipaddress.IPv6Address(inside))
        except ValueError:
            raise AddressError(f"the relay host {inside[:40]!r} is not an IPv6 address") from None
        port_text = rest[1:] if rest.startswith(":") else ("" if not rest else None)
    else:
        host, colon, port_text_raw = netloc.partition(":")
        host = host.lower()
        port_text = port_text_raw if colon else ""
        if not host:
            raise AddressError("the request address names no relay host")
        _check_host(host)
    if port_text is None:
        raise AddressError(f"the relay authority {netloc[:60]!r} is malformed")
    if port_text == "":
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise AddressError(f"the relay port must be 1-65535, got {port_text[:8]!r}")
    return host, int(port_text)


def _check_host(host: str) -> None:
    try:
        ipaddress.IPv4Address(host)
        return
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise AddressError(f"the relay host {host[:60]!r} is not a host name or address")


def _relay_host_port(url: str) -> tuple[str, int]:
    prefix = "mqtts://"
    if not isinstance(url, str) or not url.startswith(prefix):
        raise AddressError(f"the relay URL must be mqtts://HOST:PORT, got {str(url)[:40]!r}")
    return _host_port(url[len(prefix) :].rstrip("/"))


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _url(host: str, port: int) -> str:
    return f"mqtts://{_netloc(host, port)}"
