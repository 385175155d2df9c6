"""The 8-digit setup code a phone types (or scans) to pair with the device, and the pairing URI.

A code is drawn uniformly from the 10^8 eight-digit strings minus a small set of patterns that look
trivial (see :func:`is_trivial`). A :class:`SetupCode` never shows its digits in ``repr`` or ``str``;
the terminal and QR printers ask for them explicitly with :meth:`SetupCode.digits`.

The pairing URI carries everything a phone needs to pair from one QR scan::

    doorward://pair?v=1&d=<device-id>&c=<code>&fp=<spki-sha256-b64url>[&h=<host>&p=<port>]
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import secrets
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote, urlsplit

from crypto.errors import CryptoError
from crypto.signed import b64url_decode

__all__ = [
    "CODE_LENGTH",
    "PairingURI",
    "Random",
    "SetupCode",
    "SetupCodeError",
    "SystemRandom",
    "draw_setup_code",
    "is_trivial",
]

CODE_LENGTH = 8
_URI_VERSION = "1"
_DEVICE_ID = re.compile(r"[a-z2-7]{16}")
_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MAX_HOSTNAME = 253
_URI_KEYS_REQUIRED = ("v", "d", "c", "fp")
_URI_KEYS_OPTIONAL = ("h", "p")


class SetupCodeError(CryptoError, ValueError):
    """A setup code or pairing URI is malformed (the message never repeats the code)."""


class Random(Protocol):
    """Where setup codes get their randomness; tests pass a deterministic one."""

    def token_bytes(self, n: int) -> bytes:
        """``n`` random bytes."""
        ...

    def randbelow(self, n: int) -> int:
        """A uniformly random int in [0, n)."""
        ...


class SystemRandom:
    """The production :class:`Random`: the operating system's CSPRNG via :mod:`secrets`."""

    def token_bytes(self, n: int) -> bytes:
        """``n`` bytes from :func:`secrets.token_bytes`."""
        return secrets.token_bytes(n)

    def randbelow(self, n: int) -> int:
        """A uniformly random int in [0, n) from :func:`secrets.randbelow`."""
        return secrets.randbelow(n)


@dataclass(frozen=True, slots=True)
class SetupCode:
    """An 8-digit setup code; its repr and str never show the digits."""

    _digits: str = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self._digits, str):
            raise SetupCodeError(f"setup code must be a str, got {type(self._digits).__name__}")
        if len(self._digits) != CODE_LENGTH or not _is_ascii_digits(self._digits):
            raise SetupCodeError(f"setup code must be {CODE_LENGTH} digits (0-9)")

    @classmethod
    def parse(cls, text: str) -> SetupCode:
        """Read a code as a person types it: 8 digits, optionally split by one space or dash."""
        compact = text.strip()
        if len(compact) == CODE_LENGTH + 1 and compact[4] in " -":
            compact = compact[:4] + compact[5:]
        if len(compact) != CODE_LENGTH or not _is_ascii_digits(compact):
            raise SetupCodeError(
                f"setup code must be {CODE_LENGTH} digits, like 1234-5678; "
                "check the code shown by the doorbell and type it again"
            )
        return cls(compact)

    def digits(self) -> str:
        """The eight digits, for the terminal/QR printer and the PAKE password only."""
        return self._digits

    def display(self) -> str:
        """The digits grouped for a person to read: ``1234-5678``."""
        return f"{self._digits[:4]}-{self._digits[4:]}"

    def password(self) -> bytes:
        """The SPAKE2 password bytes."""
        return self._digits.encode("ascii")

    def __str__(self) -> str:
        return "SetupCode(****-****)"

    def __repr__(self) -> str:
        return "SetupCode(****-****)"


def is_trivial(digits: str) -> bool:
    """Whether ``digits`` is a pattern we never draw.

    Refused: codes built from a repeated block of 1, 2 or 4 digits (``11111111``, ``12121212``,
    ``12341234``) and runs that step by +1 or -1 modulo 10 (``12345678``, ``87654321``,
    ``78901234``). These are what a person or an attacker types first and what a homeowner would
    distrust as "not random"; refusing them removes 10,020 of the 10^8 codes, under 0.0002 bits.
    """
    for period in (1, 2, 4):
        if digits == digits[:period] * (len(digits) // period):
            return True
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(digits)}
    return steps in ({1}, {9})


def draw_setup_code(random: Random | None = None) -> SetupCode:
    """Draw a uniformly random non-trivial setup code."""
    source = random if random is not None else SystemRandom()
    while True:
        digits = f"{source.randbelow(10**CODE_LENGTH):0{CODE_LENGTH}d}"
        if not is_trivial(digits):
            return SetupCode(digits)


@dataclass(frozen=True, slots=True)
class PairingURI:
    """What a phone learns from the pairing QR code: device id, code, TLS pin, and where to go."""

    device_id: str
    code: SetupCode = field(repr=False)
    fingerprint: str
    host: str | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        _check_device_id(self.device_id)
        _check_fingerprint(self.fingerprint)
        if (self.host is None) != (self.port is None):
            raise SetupCodeError("pairing URI must give both host and port, or neither")
        if self.host is not None:
            _check_host(self.host)
        if self.port is not None and (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not 0 < self.port < 65536
        ):
            raise SetupCodeError(f"pairing URI port must be 1-65535, got {self.port!r}")

    def to_uri(self) -> str:
        """The URI text (it contains the setup code: print it, never log it)."""
        parts = [
            f"v={_URI_VERSION}",
            f"d={self.device_id}",
            f"c={self.code.digits()}",
            f"fp={self.fingerprint}",
        ]
        if self.host is not None:
            parts += [f"h={quote(self.host, safe='')}", f"p={self.port}"]
        return "doorward://pair?" + "&".join(parts)

    @classmethod
    def parse(cls, uri: str) -> PairingURI:
        """Parse a pairing URI strictly: exact scheme and path, each key once, no unknown keys."""
        if not isinstance(uri, str) or not uri.isascii():
            raise SetupCodeError("pairing URI must be ASCII text")
        try:
            split = urlsplit(uri)
        except ValueError:  # an unbalanced '[' or ']' in the authority ("Invalid IPv6 URL")
            raise SetupCodeError("pairing URI must start with doorward://pair?") from None
        if split.scheme != "doorward" or split.netloc != "pair" or split.path not in ("", "/"):
            raise SetupCodeError("pairing URI must start with doorward://pair?")
        if split.fragment or "#" in uri:
            raise SetupCodeError("pairing URI must not have a fragment")
        fields = _parse_query(split.query)
        if fields["v"] != _URI_VERSION:
            raise SetupCodeError(
                f"pairing URI version must be {_URI_VERSION}, got {_shown(fields['v'])}; "
                "update the Doorward app"
            )
        port: int | None = None
        if "p" in fields:
            text = fields["p"]
            if not _is_ascii_digits(text) or text.startswith("0") or len(text) > 5:
                raise SetupCodeError(f"pairing URI port must be 1-65535, got {_shown(text)}")
            port = int(text)
        host = _unquote_host(fields["h"]) if "h" in fields else None
        code_digits = fields["c"]
        if len(code_digits) != CODE_LENGTH or not _is_ascii_digits(code_digits):
            raise SetupCodeError(f"pairing URI setup code must be {CODE_LENGTH} digits")
        try:
            return cls(
                device_id=fields["d"],
                code=SetupCode(code_digits),
                fingerprint=fields["fp"],
                host=host,
                port=port,
            )
        except SetupCodeError as error:
            # The other fields' errors quote what was given; a mangled URI may have the code
            # pasted into one of them.
            if code_digits in str(error):
                raise SetupCodeError(str(error).replace(code_digits, "<setup code>")) from None
            raise


def _parse_query(query: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for pair in query.split("&") if query else []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SetupCodeError(f"pairing URI field {_shown(key)} has no value")
        if key not in _URI_KEYS_REQUIRED and key not in _URI_KEYS_OPTIONAL:
            raise SetupCodeError(f"pairing URI has an unknown field {_shown(key)}")
        if key in fields:
            raise SetupCodeError(f"pairing URI field {key!r} appears twice")
        fields[key] = value
    missing = [key for key in _URI_KEYS_REQUIRED if key not in fields]
    if missing:
        raise SetupCodeError(f"pairing URI is missing {', '.join(missing)}")
    if ("h" in fields) != ("p" in fields):
        raise SetupCodeError("pairing URI must give both host and port, or neither")
    return fields


def _shown(text: str) -> str:
    """Quote a piece of a refused URI for an error, unless it could hold the setup code.

    A mangled URI can carry the code anywhere (a lost '=' or '&' turns it into a field name or
    glues it to a port), so only pieces too short to hold part of it are repeated.
    """
    if len(text) < 4:
        return repr(text)
    return f"({len(text)} characters, not shown)"


def _unquote_host(text: str) -> str:
    # Only IPv6 literals need escaping (':' is fine in a query, '%' zone ids are refused).
    host = text.replace("%3A", ":").replace("%3a", ":")
    if "%" in host:
        raise SetupCodeError("pairing URI host must be a hostname or an IP address")
    return host


def _check_device_id(device_id: str) -> None:
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise SetupCodeError(
            f"device id must be 16 lowercase base32 characters, got {str(device_id)[:32]!r}"
        )


def _check_fingerprint(fingerprint: str) -> None:
    try:
        raw = b64url_decode(fingerprint)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise SetupCodeError(
            "TLS fingerprint must be 43 characters of unpadded base64url (SHA-256), "
            f"got {str(fingerprint)[:64]!r}"
        )


def _check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > _MAX_HOSTNAME or not all(_HOSTNAME_LABEL.fullmatch(label) for label in labels):
        raise SetupCodeError(
            f"pairing URI host must be a hostname or an IP address, got {host[:64]!r}"
        )


def _is_ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()
