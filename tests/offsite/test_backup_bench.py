"""``bench/backup.py --json`` with tiny sizes: it runs end to end (SeaweedFS, a doorward serve
recording a 1080p file, the uploader) and its last line holds every figure as a sane number."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.offsite.seaweed import find_weed
from hub.offsite.target import OffsiteError
from tests.kit import in_ci

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "backup.py"


def test_the_backup_benchmark_prints_every_figure() -> None:
    try:
        find_weed()
    except OffsiteError as exc:
        if in_ci():
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable, str(BENCH), "--json", "--segments", "6", "--live-segments", "2",
            "--rounds", "1", "--lag-seconds", "10", "--video-seconds", "4",
            "--restore-clips", "2", "--restore-segments", "2",
        ],
        capture_output=True, text=True, timeout=540, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("upload_vs_raw_put", "upload_MBps", "raw_put_MBps"):
        assert isinstance(result[key], float), key
        assert 0 < result[key] < math.inf, key
    for key in ("uploader_cpu_share", "uploader_cpu_share_live", "raw_put_cpu_share"):
        assert isinstance(result[key], float), key
        assert 0 < result[key] < 1, key
    assert result["upload_segments"] == 6
    assert result["upload_clips"] == 1
    assert (
        0 <= result["backup_lag_p50_s"] <= result["backup_lag_p95_s"] <= result["backup_lag_max_s"]
    )
    assert result["lag_segments"] >= 3  # 10 s of continuous motion in 2-second segments
    assert result["lag_segments_not_uploaded"] == 0
    assert result["lag_pipeline_errors"] == 0
    assert result["lag_backup_failures"] == 0
    assert result["lag_frames_dropped"] >= 0
    assert result["lag_frames_behind"] >= 0
    assert 1 < result["lag_camera_Mbps"] < 10
    if (ROOT / "bench" / "_restore_bench.py").is_file():
        assert 0 < result["restore_vs_download"] < math.inf
    else:
        assert result["restore_vs_download"] is None
        assert "_restore_bench.py is not in this tree" in done.stderr
