"""The GPIO doorbell button (hardware.gpio): its edge decoding, its config, the errors opening it
gives where there is no chip (CI), and, where the gpio-sim kernel module is loaded, real edges."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardware import ButtonEvent, DoorbellButton
from hardware.gpio import ButtonOpenFailed, EdgeDecoder, GpioButton, GpioButtonSpec
from hub.server.config import ConfigError, load_config

pytestmark = pytest.mark.timeout(30)

MS = 1_000_000  # nanoseconds


def test_a_push_rings_at_once_and_a_long_one_is_also_a_hold() -> None:
    decoder = EdgeDecoder(debounce_ns=20 * MS, hold_ns=1000 * MS)
    assert decoder.edge(True, 5000 * MS) == [ButtonEvent("press", 5.0)]
    assert decoder.edge(False, 5300 * MS) == []  # a short push: the press was all
    assert decoder.edge(True, 6000 * MS) == [ButtonEvent("press", 6.0)]
    assert decoder.edge(False, 9500 * MS) == [ButtonEvent("hold", 6.0, held_s=3.5)]


def test_contact_bounce_and_repeated_levels_ring_once() -> None:
    decoder = EdgeDecoder(debounce_ns=20 * MS, hold_ns=1000 * MS)
    events = []
    for pressed, at_ms in [
        (True, 100),
        (False, 105),
        (True, 110),
        (True, 150),
        (False, 400),
        (False, 410),
    ]:
        events += decoder.edge(pressed, at_ms * MS)
    assert events == [ButtonEvent("press", 0.1)]
    assert decoder.bounces == 3  # at 105, 110 and 410 ms; 150 repeats the level


def test_the_button_table_is_checked_by_name() -> None:
    spec = GpioButtonSpec.from_table({"chip": "gpiochip0", "line": 17})
    assert spec.chip_path == "/dev/gpiochip0"
    assert (spec.active_low, spec.bias, spec.debounce_ms) == (True, "pull-up", 20)
    with pytest.raises(ValueError, match=r"^unknown key\(s\) pin; known: chip, line, "):
        GpioButtonSpec.from_table({"chip": "gpiochip0", "line": 17, "pin": 4})
    with pytest.raises(ValueError, match=r"^chip and line are required"):
        GpioButtonSpec.from_table({"chip": "gpiochip0"})
    with pytest.raises(
        ValueError, match=r"^bias must be one of pull-up, pull-down, disabled, as-is, got 'up'$"
    ):
        GpioButtonSpec.from_table({"chip": "gpiochip0", "line": 17, "bias": "up"})
    with pytest.raises(
        ValueError, match=r"^line must be a line offset \(0, 1, …\) or a line name, got -1$"
    ):
        GpioButtonSpec(chip="gpiochip0", line=-1)


def test_the_config_file_names_the_button(tmp_path: Path) -> None:
    path = tmp_path / "doorward.toml"
    path.write_text(
        '[button]\nchip = "/dev/gpiochip0"\nline = 17\ndebounce_ms = 30\ncamera = "front"\n'
    )
    spec = load_config(path).button
    assert spec == GpioButtonSpec(chip="/dev/gpiochip0", line=17, debounce_ms=30, camera="front")
    path.write_text('[button]\nchip = "/dev/gpiochip0"\nline = 17\ndebounce_ms = 5000\n')
    with pytest.raises(
        ConfigError, match=r"^button: debounce_ms must be an integer from 0 to 1000, got 5000$"
    ):
        load_config(path)
    path.write_text("[button]\n")
    assert load_config(path).button is None


def test_without_a_gpio_chip_opening_says_what_to_fix() -> None:
    with pytest.raises(ButtonOpenFailed) as missing:
        GpioButton(GpioButtonSpec(chip="gpiochip99", line=17)).open()
    message = str(missing.value)
    if not list(Path("/dev").glob("gpiochip*")):
        assert message == (
            "GPIO chip /dev/gpiochip99 does not exist, and this machine has no GPIO chip: remove "
            "[button] from the config, or enable the board's GPIO driver"
        )
    else:
        assert message.startswith(
            "GPIO chip /dev/gpiochip99 does not exist: set chip in [button] to one of /dev/gpio"
        )
    with pytest.raises(
        ButtonOpenFailed, match=r"^/dev/null is not a GPIO chip: set chip in \[button\]"
    ):
        GpioButton(GpioButtonSpec(chip="/dev/null", line=0)).open()


def test_a_gpio_button_is_a_doorbell_button() -> None:
    assert isinstance(GpioButton(GpioButtonSpec(chip="gpiochip0", line=1)), DoorbellButton)


# -- real edges, on a simulated GPIO chip (the gpio-sim kernel module) -----------------------

GPIO_SIM = Path("/sys/kernel/config/gpio-sim")


@pytest.fixture
def sim_chip() -> Iterator[tuple[str, Path]]:
    """A gpio-sim chip with 8 lines: its /dev path, and the sysfs folder of line 3's pull."""
    if not GPIO_SIM.is_dir() or not os.access(GPIO_SIM, os.W_OK):
        pytest.skip(
            "needs the gpio-sim kernel module and configfs, writable (as root): "
            "modprobe gpio-sim; mount -t configfs none /sys/kernel/config"
        )
    base = GPIO_SIM / f"doorward-{os.getpid()}"
    bank = base / "bank0"
    bank.mkdir(parents=True)
    try:
        (bank / "num_lines").write_text("8")
        (base / "live").write_text("1")
        chip = (bank / "chip_name").read_text().strip()
        device = (base / "dev_name").read_text().strip()
        line = Path("/sys/devices/platform") / device / chip / "sim_gpio3"
        yield f"/dev/{chip}", line
    finally:
        (base / "live").write_text("0")
        bank.rmdir()
        base.rmdir()


@pytest.mark.asyncio
async def test_edges_on_a_simulated_chip_become_a_press_and_a_hold(
    sim_chip: tuple[str, Path],
) -> None:
    chip, line = sim_chip
    button = GpioButton(
        GpioButtonSpec(chip=chip, line=3, active_low=True, debounce_ms=10, hold_s=0.2)
    ).open()
    events = button.events()
    try:
        (line / "pull").write_text("pull-down")  # the button pulls the line to ground: pressed
        press = await asyncio.wait_for(events.__anext__(), 5)
        assert press.kind == "press"
        assert abs(press.at_s - time.monotonic()) < 5  # the kernel's monotonic clock
        await asyncio.sleep(0.3)
        (line / "pull").write_text("pull-up")  # released after 0.3 s: also a hold
        hold = await asyncio.wait_for(events.__anext__(), 5)
        assert hold.kind == "hold"
        assert hold.at_s == press.at_s
        assert hold.held_s >= 0.2
    finally:
        await button.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(events.__anext__(), 5)


def test_serve_with_a_button_on_a_missing_chip_exits_with_that_message(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    config = tmp_path / "doorward.toml"
    config.write_text('[button]\nchip = "gpiochip99"\nline = 17\n')
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    run = subprocess.run(
        [
            *(sys.executable, "-m", "hub.cli.main", "serve", "--config", str(config)),
            *("--data", str(tmp_path / "data"), "--camera", "simulated"),
            *("--host", "127.0.0.1", "--port", "0", "--no-advertise"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("doorward: error: GPIO chip /dev/gpiochip99 does not exist")
    assert not (tmp_path / "data" / "doorward.db").exists()  # refused before the device opened
