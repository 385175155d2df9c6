"""Privacy zones in the `doorward serve` config: parsed per camera and checked before serving."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from hub.service import ConfigError, ServeConfig, load_config, serve

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
async def test_zones_for_an_unknown_camera_stop_serve_before_anything_starts(
    tmp_path: Path,
) -> None:
    config = ServeConfig(
        data_dir=tmp_path / "data",
        cameras=("front=simulated",),
        privacy_zones=(("back", ((((0.0, 0.0), (1.0, 0.0), (1.0, 1.0)),))),),
        port=0,
        advertise=False,
    )
    with pytest.raises(ConfigError) as info:
        await asyncio.wait_for(serve(config, out=io.StringIO()), 30)
    assert str(info.value) == (
        "privacy_zones name camera(s) back that are not configured (cameras: front)"
    )
    assert not (tmp_path / "data").exists()
