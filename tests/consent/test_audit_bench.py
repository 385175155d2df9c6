"""The audit benchmark helpers run and build a correct large log (timings unchecked)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from consent import _merkle

BENCH = Path(__file__).resolve().parents[2] / "bench" / "_audit_bench.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_audit_bench", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_figures_on_a_small_log() -> None:
    bench = load_bench()
    assert bench.audit_append_per_s(n=20) > 0
    assert bench.checkpoint_per_s(n=5, entries=10) > 0
    with bench.large_log(entries=1000) as log:
        assert log.size == 1000
        entries = log.entries(0, 1000)
        assert log.root() == _merkle.root_from_leaf_hashes(e.leaf_hash for e in entries)
        assert entries[999].body()["index"] == 999
        # A tree of 1000 leaves has inclusion paths of 9 or 10 hashes.
        assert 9 * 32 <= bench.inclusion_proof_bytes_1e6(log, samples=50) <= 10 * 32
        assert bench.inclusion_proof_us_1e6(log, samples=10) > 0
    figures = bench.measure_all(entries=100, appends=10, checkpoints=5)
    assert set(figures) == {
        "audit_append_per_s",
        "checkpoint_per_s",
        "inclusion_proof_bytes_1e6",
        "inclusion_proof_us_1e6",
    }
