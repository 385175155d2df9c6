"""The ``encoder`` option: a hardware encoder when this build and device have one, else libx264."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from crypto import age
from crypto.keys import DeviceIdentity
from device import ClipStore, RecorderConfig
from hub.server.config import ConfigError, load_config
from tests.device.kit import camera, decode_counters, decrypt_segments, run_pipeline


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("encoder", "reason"),
    [
        ("h264_doorward_none", "reason=not in this PyAV build"),
        # In FFmpeg builds that have it, but this machine has no V4L2 memory-to-memory device.
        ("h264_v4l2m2m", "reason=it failed to open"),
    ],
)
async def test_an_encoder_this_machine_lacks_falls_back_to_libx264(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, encoder: str, reason: str
) -> None:
    import av

    if encoder == "h264_v4l2m2m" and encoder not in av.codecs_available:
        pytest.skip("this PyAV build has no h264_v4l2m2m")
    owner = age.X25519Identity.generate()
    store = ClipStore(tmp_path / "data", DeviceIdentity.generate())
    source = camera(3.0, presses=[0.5])
    config = RecorderConfig(encoder=encoder, post_roll_s=5.0)
    with caplog.at_level(logging.INFO, logger="device._encoder"):
        try:
            stats = await run_pipeline(source, store, owner, config=config).run()
            [clip] = store.list_clips()
            counters = [
                c
                for ts in decrypt_segments(store, clip.clip_id, owner)
                for c in decode_counters(ts)
            ]
        finally:
            store.close()
    fallbacks = [r.getMessage() for r in caplog.records if "encoder.fallback" in r.getMessage()]
    assert len(fallbacks) == 1  # one clear line, not one per frame
    assert fallbacks[0].startswith(f"encoder.fallback wanted={encoder} using=libx264 {reason}")
    # Nothing lost: every frame was encoded (by libx264) and recorded.
    assert stats.errors == 0
    assert counters == list(range(45))


def test_the_encoder_option_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "doorward.toml"
    path.write_text('encoder = "h264_v4l2m2m"\n')
    assert load_config(path).encoder == "h264_v4l2m2m"
    path.write_text('encoder = "libx264 --crf 0"\n')
    with pytest.raises(ConfigError, match=r"encoder must be an FFmpeg encoder name"):
        load_config(path)
