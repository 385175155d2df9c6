"""`doorward doctor`: a board that is ready passes every check; each problem fails its check with
a fix, and the command exits non-zero."""

from __future__ import annotations

import email.utils
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from hub.server.config import ServeConfig, load_config
from hub.server.doctor import run_doctor

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
SCENE = "[camera]\nwidth = 320\nheight = 180\nfps = 10\nseconds = 5\nseed = 2\n"


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    path = tmp_path / "scene.toml"
    path.write_text(SCENE)
    return path


def config(tmp_path: Path, scene: Path, **more: object) -> ServeConfig:
    return ServeConfig(data_dir=tmp_path / "data", cameras=(f"front=simulated:{scene}",), **more)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def dated_server() -> AsyncIterator[tuple[str, list[float]]]:
    """An HTTP server whose Date header is now plus ``skew[0]`` seconds."""
    skew = [0.0]

    async def head(_request: web.Request) -> web.Response:
        date = email.utils.formatdate(time.time() + skew[0], usegmt=True)
        return web.Response(headers={"Date": date})

    app = web.Application()
    app.router.add_route("*", "/", head)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/", skew
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_a_ready_board_passes_every_check(
    tmp_path: Path, scene: Path, dated_server: tuple[str, list[float]]
) -> None:
    url, _ = dated_server
    findings = await run_doctor(config(tmp_path, scene, max_storage_mb=16), time_url=url)
    assert [f.check for f in findings] == [
        "camera front",
        "encoder",
        "data folder",
        "disk",
        "clock",
        "descriptors",
    ]
    assert all(f.ok for f in findings), findings
    assert findings[0].detail == "simulated: 320x180 at 10 fps, raw"
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
    assert float(findings[3].facts["write_mb_s"]) > 0
    assert not list((tmp_path / "data").glob(".doctor-*"))  # the write test cleans up


@pytest.mark.asyncio
async def test_a_clock_off_the_servers_fails_with_the_fix(
    tmp_path: Path, scene: Path, dated_server: tuple[str, list[float]]
) -> None:
    url, skew = dated_server
    skew[0] = -3600.0
    findings = {f.check: f for f in await run_doctor(config(tmp_path, scene), time_url=url)}
    clock = findings["clock"]
    assert not clock.ok
    # The Date header has whole seconds: the skew is 3600 s and a fraction.
    assert clock.detail in (
        f"the clock is +3600 s off {url}'s",
        f"the clock is +3601 s off {url}'s",
    )
    assert clock.fix.startswith("enable time sync: timedatectl set-ntp true")


@pytest.mark.asyncio
async def test_a_folder_others_can_open_fails_with_chmod(tmp_path: Path, scene: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    findings = {f.check: f for f in await run_doctor(config(tmp_path, scene))}
    folder = findings["data folder"]
    assert not folder.ok
    assert "has mode 0755" in folder.detail
    assert folder.fix == f"chmod 0700 {data}"
    assert "disk" not in findings  # no test file is written into a folder that is not private


@pytest.mark.asyncio
async def test_a_missing_camera_and_a_missing_gpio_chip_fail_with_fixes(tmp_path: Path) -> None:
    conf = load_config(
        None,
        {"data_dir": tmp_path / "data", "cameras": ("front=v4l2:/dev/video-none",)},
    )
    from hardware.gpio import GpioButtonSpec

    conf = ServeConfig(
        data_dir=conf.data_dir,
        cameras=conf.cameras,
        button=GpioButtonSpec(chip="/dev/gpiochip-none", line=17),
    )
    findings = {f.check: f for f in await run_doctor(conf)}
    camera = findings["camera front"]
    assert not camera.ok
    assert "/dev/video-none" in camera.detail
    assert "v4l2-ctl --list-devices" in camera.fix
    button = findings["button"]
    assert not button.ok
    assert button.detail.startswith("GPIO chip /dev/gpiochip-none does not exist")


def run_cli(*args: str, limit_fds: int | None = None) -> subprocess.CompletedProcess[str]:
    def lower_limit() -> None:
        if limit_fds is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit_fds, limit_fds))

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-m", "hub.cli.main", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=100,
        env=env,
        preexec_fn=lower_limit,
        check=False,
    )


def test_the_command_exits_1_with_one_line_per_check_and_its_fix(
    tmp_path: Path, scene: Path
) -> None:
    run = run_cli(
        "--data", str(tmp_path / "data"), "--camera", f"front=simulated:{scene}", limit_fds=150
    )
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "ok    camera front: simulated: 320x180 at 10 fps, raw"
    failed = [i for i, line in enumerate(lines) if line.startswith("FAIL  descriptors: ")]
    assert len(failed) == 1
    assert lines[failed[0]] == (
        "FAIL  descriptors: the descriptor limit is 150; recording keeps 128 and the API needs at least 64 more"
    )
    assert lines[failed[0] + 1].startswith("      fix: raise it: LimitNOFILE=8192 in the unit")
    assert run.stderr.strip().endswith("doorward doctor: 1 check(s) failed")


def test_json_output_and_exit_0_when_all_pass(tmp_path: Path, scene: Path) -> None:
    run = run_cli(
        "--data", str(tmp_path / "data"), "--camera", f"front=simulated:{scene}", "--json"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] is True
    assert {c["check"] for c in report["checks"]} >= {"camera front", "encoder", "disk", "clock"}
