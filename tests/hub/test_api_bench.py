"""bench/api.py in its quick mode: it runs end to end (a real ``doorward serve``, signed clients,
the static-file baseline) and its last line is the JSON object with every documented key.
Timings are not checked: only that each figure is there and has the right type."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "api.py"


@pytest.mark.timeout(240)
@pytest.mark.slow
def test_quick_run_reports_every_key() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--json", "--seconds", "2", "--clients", "1,5", "--fps", "5"],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for n in (1, 5):
        for key in ("p50_ms", "p99_ms", "rps"):
            assert isinstance(result[f"{key}_{n}"], float), key
        assert result[f"errors_{n}"] == 0
        assert isinstance(result[f"dropped_frames_{n}"], int)
        assert result[f"rps_{n}"] > 0
    for key in ("startup_s", "startup_https_s", "startup_discoverable_s"):
        assert isinstance(result[key], float), key
    assert result["download_vs_static"] > 0
    assert result["segments"] >= 1
    assert result["serve_exit"] == 0
