"""packaging/doorward.service: systemd-analyze verifies it cleanly and scores its exposure at
most 2.0, with the settings the doorbell relies on (notify, watchdog, sandbox, devices)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.packaging.unitkit import ROOT, UNIT, read_unit

pytestmark = pytest.mark.timeout(120)

MAX_EXPOSURE = 2.0


def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    assert tool is not None, "systemd-analyze is missing: apt-get install systemd"
    return tool


def exposure() -> float:
    run = subprocess.run(
        [analyze(), "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(
        r"Overall exposure level for doorward\.service: (\d+\.\d+)", run.stdout + run.stderr
    )
    assert found, run.stdout + run.stderr
    return float(found.group(1))


def test_the_unit_verifies_cleanly(tmp_path: Path) -> None:
    # verify checks that ExecStart= is executable: point it at a stand-in for the packaged
    # /opt/doorward/bin/doorward, and change nothing else.
    stand_in = tmp_path / "doorward"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    text = UNIT.read_text()
    assert text.count("/opt/doorward/bin/doorward ") == 1
    unit = tmp_path / "doorward.service"
    unit.write_text(text.replace("/opt/doorward/bin/doorward ", f"{stand_in} "))
    run = subprocess.run(
        [analyze(), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout + run.stderr == ""  # not one warning


def test_the_exposure_is_at_most_2_and_the_readme_says_how_much() -> None:
    figure = exposure()
    assert figure <= MAX_EXPOSURE
    readme = (ROOT / "README.md").read_text()
    assert f"overall exposure of {figure:.1f}" in readme


def test_the_unit_is_a_watched_notify_service_in_a_sandbox() -> None:
    unit = read_unit(UNIT.read_text())
    service = unit["Service"]
    expected = {
        "Type": ["notify"],
        "Restart": ["on-failure"],
        "User": ["doorward"],
        "StateDirectory": ["doorward"],
        "StateDirectoryMode": ["0700"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "NoNewPrivileges": ["yes"],
        "CapabilityBoundingSet": [""],
        "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX AF_NETLINK"],
        "DevicePolicy": ["closed"],
        "DeviceAllow": ["char-video4linux rw", "char-gpiochip rw"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
    }
    for key, values in expected.items():
        assert service.get(key) == values, key
    watchdog_s = int(service["WatchdogSec"][0])
    assert watchdog_s > 0
    assert "MemoryMax" in service
    assert service["ExecStart"][0].startswith("/opt/doorward/bin/doorward serve ")
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
