"""bench/attack.py in a quick run: it runs end to end (a real ``doorward serve``, the attacker
process, the owner's probes) and its last line is the JSON object with every documented key.
Timings are not checked: only that each figure is there, has the right type, and that nothing
was lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "attack.py"


@pytest.mark.timeout(240)
@pytest.mark.slow
def test_quick_run_reports_every_key() -> None:
    done = subprocess.run(
        [
            sys.executable, str(BENCH), "--json", "--seconds", "2", "--connections", "60",
            "--addresses", "6", "--nofile", "256",
        ],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for key in (
        "owner_health_p99_ms",
        "owner_health_p99_ms_under_attack",
        "owner_health_p99_ratio",
        "rss_growth_MB_under_attack",
        "log_growth_MB_under_attack",
    ):
        assert isinstance(result[key], float), key
    for key in (
        "segments_lost_under_attack",
        "frames_dropped_under_attack",
        "frames_behind_under_attack",
        "owner_health_errors_under_attack",
        "attack_opened",
    ):
        assert isinstance(result[key], int), key
    assert result["segments_lost_under_attack"] == 0
    assert result["attack_opened"] >= 60
    assert result["emfile_in_log"] is False
    assert result["serve_exit"] == 0
