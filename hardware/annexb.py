"""H.264 Annex B helpers shared by everything that forwards a camera's own packets untouched."""

from __future__ import annotations

__all__ = ["has_sps", "parameter_sets"]

_SPS = 7  # nal_unit_type of a sequence parameter set (ITU-T H.264 Table 7-1)


def has_sps(data: bytes) -> bool:
    """Whether an Annex B access unit carries a sequence parameter set near its start."""
    start = 0
    while (start := data.find(b"\x00\x00\x01", start)) != -1 and start < 512:
        if start + 3 < len(data) and data[start + 3] & 0x1F == _SPS:
            return True
        start += 3
    return False


def parameter_sets(extradata: bytes | None) -> bytes:
    """SPS/PPS to put before keyframes that lack them; only Annex B extradata can be used as is."""
    if extradata and extradata.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")):
        return extradata
    return b""
