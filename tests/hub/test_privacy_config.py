"""Privacy zones in the `doorward serve` config: parsed per camera and checked before serving."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from hub.server.config import ConfigError, ServeConfig, load_config
from hub.server.serve import serve

ZONE = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serve.toml"
    path.write_text(text)
    return path


def test_zones_are_read_per_camera(tmp_path: Path) -> None:
    path = _write(tmp_path, f'cameras = ["front=simulated"]\n[privacy_zones]\nfront = [{ZONE}]\n')
    config = load_config(path)
    assert config.privacy_zones == (("front", (((0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5)),)),)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("privacy_zones = 3", "privacy_zones must be a table: camera name = list of polygons"),
        (
            "[privacy_zones]\nfront = [[[0, 0], [1, 0]]]",
            "privacy_zones.front: privacy_zones[0] must have at least 3 points, got 2; write "
            "polygons as [[x, y], …] with x and y between 0 and 1",
        ),
        (
            "[privacy_zones]\nfront = [[[0, 0], [2, 0], [1, 1]]]",
            "privacy_zones.front: privacy_zones[0] points must be normalised to 0..1, got (2.0, "
            "0.0); write polygons as [[x, y], …] with x and y between 0 and 1",
        ),
    ],
)
def test_bad_zones_are_refused_with_the_camera_named(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, body + "\n"))
    assert str(info.value) == message


@pytest.mark.asyncio
@pytest.mark.parametrize("option", ["privacy_zones", "motion_masks"])
async def test_polygons_for_an_unknown_camera_stop_serve_before_anything_starts(
    tmp_path: Path, option: str
) -> None:
    polygons = (("back", ((((0.0, 0.0), (1.0, 0.0), (1.0, 1.0)),))),)
    config = ServeConfig(
        data_dir=tmp_path / "data",
        cameras=("front=simulated",),
        port=0,
        advertise=False,
        **{option: polygons},
    )
    with pytest.raises(ConfigError) as info:
        await asyncio.wait_for(serve(config, out=io.StringIO()), 30)
    assert str(info.value) == (
        f"{option} name camera(s) back that are not configured (cameras: front)"
    )
    assert not (tmp_path / "data").exists()


def test_motion_masks_and_sensitivity_are_read(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f'cameras = ["front=simulated"]\nmotion_sensitivity = 0.8\n[motion_masks]\nfront = [{ZONE}]\n',
    )
    config = load_config(path)
    assert config.motion_sensitivity == 0.8
    assert config.motion_masks == (("front", (((0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5)),)),)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "[motion_masks]\nfront = [[[0, 0], [1, 0]]]",
            "motion_masks.front: masks[0] must have at least 3 points, got 2; write polygons as "
            "[[x, y], …] with x and y between 0 and 1",
        ),
        (
            "motion_sensitivity = 1.5",
            "invalid serve option: motion_sensitivity must be in [0, 1], got 1.5",
        ),
    ],
)
def test_bad_motion_settings_are_refused(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, body + "\n"))
    assert str(info.value) == message


@pytest.mark.asyncio
async def test_the_detector_of_a_camera_gets_its_masks_and_the_sensitivity(
    tmp_path: Path,
) -> None:
    from device import MotionConfig, detector_for
    from hardware import FileCamera
    from hardware.sim import SimulatedCamera, load_scenario
    from hub.server.config import _DEFAULT_SCENARIO
    from tests.hardware._media import rendered, write_video

    mask = ((0.0, 0.0), (1.0, 0.0), (1.0, 0.3))
    config = MotionConfig(sensitivity=0.9, masks=(mask,))
    video = tmp_path / "door.mp4"
    write_video(video, rendered(3, 160, 120, 15))
    camera = FileCamera(video)
    try:
        file_detector = detector_for(camera, config)
    finally:
        await camera.close()
    assert (file_detector.config.sensitivity, file_detector.config.masks) == (0.9, (mask,))
    simulated = SimulatedCamera(load_scenario(_DEFAULT_SCENARIO))
    detector = detector_for(simulated, config)
    # The simulated camera's frame-counter strip is masked out as well.
    assert detector.config.masks[0] == mask
    assert len(detector.config.masks) == 2
