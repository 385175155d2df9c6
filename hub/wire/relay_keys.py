"""The device's relay key configurations, as phones pin them and request addresses carry them.

A device has two relay keys: an X25519 key for Oblivious HTTP exactly as RFC 9458 defines it
(:mod:`hub.wire.ohttp`, :mod:`hub.wire.ohttp_chunked`), which any OHTTP client can use, and an
ML-KEM-768+X25519 hybrid key (:mod:`hub.wire.ohttp_pq`), which Doorward's own clients use so
that calls recorded today cannot be opened by whoever breaks X25519 later. Both travel together
as one ``application/ohttp-keys`` list (RFC 9458 §3.2: each key configuration behind its 2-byte
length). A single RFC 9458 key configuration, as devices made before the hybrid key served and
phones pinned, is still read: it has no hybrid key.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.wire import ohttp, ohttp_pq

__all__ = ["RelayKeys"]

_MAX_CONFIGS = 4


@dataclass(frozen=True, slots=True)
class RelayKeys:
    """The device's classic relay key configuration and, when it has one, its hybrid one."""

    classic: ohttp.KeyConfig
    hybrid: ohttp_pq.PqKeyConfig | None = None

    @classmethod
    def parse(cls, data: bytes) -> RelayKeys:
        """Read an ``application/ohttp-keys`` list of one X25519 configuration and at most one
        hybrid one, or a lone RFC 9458 configuration; :class:`ohttp.OhttpError` (naming what is
        wrong) for anything else."""
        data = bytes(data)
        listed = _split(data)
        if listed is None:  # not a list: a lone configuration
            return cls(ohttp.KeyConfig.parse(data))
        classic: ohttp.KeyConfig | None = None
        hybrid: ohttp_pq.PqKeyConfig | None = None
        for config in listed:
            kem_id = int.from_bytes(config[1:3], "big") if len(config) >= 3 else None
            if kem_id == ohttp_pq.PQ_KEM_ID:
                if hybrid is not None:
                    raise ohttp.OhttpError("the relay key list holds two hybrid configurations")
                hybrid = ohttp_pq.PqKeyConfig.parse(config)
            else:
                if classic is not None:
                    raise ohttp.OhttpError("the relay key list holds two X25519 configurations")
                classic = ohttp.KeyConfig.parse(config)
        if classic is None:
            raise ohttp.OhttpError("the relay key list holds no X25519 configuration")
        if hybrid is not None and hybrid.key_id == classic.key_id:
            raise ohttp.OhttpError(
                f"the relay key list gives key id {classic.key_id} to both of its keys"
            )
        return cls(classic, hybrid)

    def __bytes__(self) -> bytes:
        configs = [bytes(self.classic)]
        if self.hybrid is not None:
            configs.append(bytes(self.hybrid))
        return b"".join(len(c).to_bytes(2, "big") + c for c in configs)


def _split(data: bytes) -> list[bytes] | None:
    """``data`` as a list of length-prefixed configurations, or None if it is not one."""
    configs: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data) or len(configs) == _MAX_CONFIGS:
            return None
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length == 0 or pos + 2 + length > len(data):
            return None
        configs.append(data[pos + 2 : pos + 2 + length])
        pos += 2 + length
    return configs or None
