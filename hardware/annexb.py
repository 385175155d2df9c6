"""H.264 Annex B helpers shared by everything that forwards a camera's own packets untouched."""

from __future__ import annotations

__all__ = ["has_sps", "is_reference", "parameter_sets"]

_SPS = 7  # nal_unit_type of a sequence parameter set (ITU-T H.264 Table 7-1)
_SLICES = (1, 5)  # nal_unit_type of a coded slice: non-IDR and IDR pictures


def has_sps(data: bytes) -> bool:
    """Whether an Annex B access unit carries a sequence parameter set near its start."""
    start = 0
    while (start := data.find(b"\x00\x00\x01", start)) != -1 and start < 512:
        if start + 3 < len(data) and data[start + 3] & 0x1F == _SPS:
            return True
        start += 3
    return False


def is_reference(data: bytes, *, length_prefixed: bool = False) -> bool:
    """Whether an access unit (Annex B, or 4-byte length-prefixed as in MP4) holds a slice that
    later pictures may reference: ``nal_ref_idc`` != 0 (ITU-T H.264 §7.4.1). A picture that no
    other one references can go undecoded without harming any other. True when unsure."""
    headers = []
    if length_prefixed:
        pos = 0
        while pos + 5 <= len(data):
            size = int.from_bytes(data[pos : pos + 4], "big")
            headers.append(data[pos + 4])
            pos += 4 + size
    else:
        start = 0
        while (start := data.find(b"\x00\x00\x01", start)) != -1 and start + 3 < len(data):
            headers.append(data[start + 3])
            start += 3
    slices = [h for h in headers if h & 0x1F in _SLICES]
    return not slices or any(h & 0x60 for h in slices)


def parameter_sets(extradata: bytes | None) -> bytes:
    """SPS/PPS to put before keyframes that lack them; only Annex B extradata can be used as is."""
    if extradata and extradata.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")):
        return extradata
    return b""
