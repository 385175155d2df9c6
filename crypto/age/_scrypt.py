"""The native scrypt (passphrase) recipient type."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from crypto.age._format import Stanza, b64_decode, b64_encode
from crypto.age._x25519 import open_file_key, seal_file_key
from crypto.errors import HeaderError

__all__ = ["MAX_WORK_FACTOR", "ScryptIdentity", "ScryptRecipient"]

_LABEL = b"age-encryption.org/v1/scrypt"
_SALT_SIZE = 16
# log2(N) = 20 needs 1 GiB of memory and about two seconds; anything above that in a file
# we are asked to open is treated as an attack on our memory or time.
MAX_WORK_FACTOR = 20
_DECIMAL = re.compile(r"[1-9][0-9]{0,2}")


def _wrap_key(passphrase: bytes, salt: bytes, work_factor: int) -> bytes:
    kdf = Scrypt(salt=_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1)
    return kdf.derive(passphrase)


@dataclass(frozen=True, slots=True)
class ScryptRecipient:
    """Encrypt to a passphrase; such a file must have no other recipient."""

    stanza_type: ClassVar[str] = "scrypt"
    passphrase: bytes = field(repr=False)
    work_factor: int = 18

    def __post_init__(self) -> None:
        if not 1 <= self.work_factor <= MAX_WORK_FACTOR:
            raise ValueError(
                f"work_factor must be between 1 and {MAX_WORK_FACTOR}, got {self.work_factor}"
            )
        if not self.passphrase:
            raise ValueError("passphrase must not be empty")

    def wrap(self, file_key: bytes) -> list[Stanza]:
        salt = os.urandom(_SALT_SIZE)
        body = seal_file_key(_wrap_key(self.passphrase, salt, self.work_factor), file_key)
        return [Stanza(self.stanza_type, (b64_encode(salt).decode(), str(self.work_factor)), body)]

    def __str__(self) -> str:
        return f"scrypt passphrase (work factor {self.work_factor})"


@dataclass(frozen=True, slots=True)
class ScryptIdentity:
    """Decrypt with a passphrase, refusing work factors above `max_work_factor`."""

    stanza_type: ClassVar[str] = "scrypt"
    passphrase: bytes = field(repr=False)
    max_work_factor: int = MAX_WORK_FACTOR

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        for stanza in stanzas:
            if stanza.type != self.stanza_type:
                continue
            if len(stanzas) != 1:
                raise HeaderError("an scrypt stanza must be the only stanza in the header")
            if len(stanza.args) != 2:
                raise HeaderError("scrypt stanza must have two arguments (salt, work factor)")
            salt = b64_decode(stanza.args[0].encode(), "scrypt salt")
            if len(salt) != _SALT_SIZE:
                raise HeaderError(f"scrypt salt must be 16 bytes, got {len(salt)}")
            if not _DECIMAL.fullmatch(stanza.args[1]):
                raise HeaderError("scrypt work factor must be a decimal number without leading 0")
            work_factor = int(stanza.args[1])
            if work_factor > self.max_work_factor:
                raise HeaderError(
                    f"scrypt work factor {work_factor} is above the limit {self.max_work_factor}"
                )
            if len(stanza.body) != 32:
                raise HeaderError(f"scrypt stanza body must be 32 bytes, got {len(stanza.body)}")
            return open_file_key(
                _wrap_key(self.passphrase, salt, work_factor), stanza.body, "scrypt"
            )
        return None
