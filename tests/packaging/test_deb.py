"""packaging/build-deb builds a Debian package that holds what a board needs: the application in a
private environment, the unit, the user, the default config as a conffile, the maintainer scripts.
The package is built here (about a minute) and read back with dpkg-deb."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.server.config import load_config
from tests.packaging.unitkit import ROOT, UNIT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    assert shutil.which("dpkg-deb"), "dpkg-deb is missing: apt-get install dpkg"
    out = tmp_path_factory.mktemp("deb")
    run = subprocess.run(
        [str(ROOT / "packaging" / "build-deb"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (package,) = out.glob("doorward_*.deb")
    return package


def dpkg_deb(*args: str) -> str:
    return subprocess.run(
        ["dpkg-deb", *args], capture_output=True, text=True, timeout=120, check=True
    ).stdout


def test_the_control_file_and_maintainer_scripts(deb: Path) -> None:
    info = dpkg_deb("-I", str(deb))
    control = dict(
        line.strip().split(": ", 1)
        for line in dpkg_deb("-f", str(deb)).splitlines()
        if ": " in line and not line.startswith(" ")
    )
    assert control["Package"] == "doorward"
    assert control["Version"] == "0.1.0"
    assert control["Architecture"] == dpkg_arch()
    assert "systemd" in control["Depends"]
    assert control["Depends"].startswith("python3.")
    for script in ("postinst", "prerm", "postrm", "conffiles"):
        assert f" {script} " in info, script
    assert (
        "systemd-sysusers /usr/lib/sysusers.d/doorward.conf"
        in (ROOT / "packaging" / "postinst").read_text()
    )


def test_the_contents(deb: Path, tmp_path: Path) -> None:
    listing = dpkg_deb("-c", str(deb))
    for path in (
        "./lib/systemd/system/doorward.service",
        "./usr/lib/sysusers.d/doorward.conf",
        "./etc/doorward/doorward.toml",
        "./opt/doorward/bin/doorward",
        "./usr/bin/doorward -> /opt/doorward/bin/doorward",
        "./usr/share/doc/doorward/README.md",
    ):
        assert path in listing, path
    assert "/tmp" not in listing
    dpkg_deb("-x", str(deb), str(tmp_path))
    # The unit is the one in the tree; the conffile is the only conffile.
    assert (tmp_path / "lib/systemd/system/doorward.service").read_text() == UNIT.read_text()
    control = tmp_path / "control"
    dpkg_deb("-e", str(deb), str(control))
    assert (control / "conffiles").read_text().split() == ["/etc/doorward/doorward.toml"]
    # The user and the groups the unit names.
    sysusers = (tmp_path / "usr/lib/sysusers.d/doorward.conf").read_text()
    assert "u doorward - " in sysusers
    assert "g gpio -" in sysusers
    # The default config reads as a config, with the packaged data folder.
    config = load_config(tmp_path / "etc/doorward/doorward.toml")
    assert str(config.data_dir) == "/var/lib/doorward"
    assert config.cameras == ("front=v4l2:/dev/video0",)
    # The environment runs the installed paths (and works wherever it is unpacked).
    launcher = (tmp_path / "opt/doorward/bin/doorward").read_text()
    assert launcher.startswith("#!/opt/doorward/bin/python")
    python = tmp_path / "opt/doorward/bin/python"
    assert python.resolve().is_relative_to("/usr/bin")
    run = subprocess.run(
        [
            str(python),
            "-c",
            "import gpiod, hub.cli.main, hub.server.runtime; print(gpiod.__version__)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("2.")
    doctor = subprocess.run(
        [str(python), "-m", "hub.cli.main", "doctor", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert doctor.returncode == 0, doctor.stderr


def dpkg_arch() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
