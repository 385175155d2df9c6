"""The crypto benchmark runs and reports every figure the issue asks for (timings unchecked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "crypto.py"


def test_bench_reports_json_last() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--mib", "1", "--repeat", "1", "--json"],
        capture_output=True,
        timeout=120,
        check=True,
    )
    lines = result.stdout.decode().strip().splitlines()
    figures = json.loads(lines[-1])
    required = {
        "encrypt_MBps", "decrypt_MBps", "pyrage_encrypt_MBps", "pyrage_decrypt_MBps",
        "raw_aead_MBps", "encrypt_vs_pyrage", "encrypt_vs_raw_aead", "reheader_x25519_us",
        "reheader_hybrid_us", "encrypt_with_sha256_MBps", "sha256_MBps",
    }  # fmt: skip
    assert required <= set(figures)
    assert all(isinstance(v, float) and v > 0 for v in figures.values())
    assert any(line.startswith("encrypt_MBps") for line in lines[:-1])
