"""Shared fixtures: the published age vectors and the peer `age` tools (tests.kit finds them);
the Hypothesis profiles (``ci`` when CI=true, else ``dev``; ``HYPOTHESIS_PROFILE`` overrides)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from tests.kit import age_vectors_dir, in_ci, require_tool

# The fuzz tests (tests/fuzz, `-m fuzz`) run each target for a share of max_examples; with the
# `ci` profile they take about 60-120 s together. `fuzz-long` is for a deeper run by hand:
# HYPOTHESIS_PROFILE=fuzz-long python -m pytest -m fuzz -p no:timeout
# In CI the Hypothesis examples are derived from each test (derandomize): a red build is
# reproducible from the commit alone; fresh inputs come from the atheris run that follows
# (fuzz/run.py) and from `dev` and `fuzz-long` runs.
settings.register_profile(
    "ci", max_examples=100, deadline=None, derandomize=True, database=None, print_blob=True
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("fuzz-long", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if in_ci() else "dev"))


@pytest.fixture(scope="session")
def age_vectors() -> Path:
    path = age_vectors_dir()
    if path is None:
        message = (
            "age test vectors not found: set DOORWARD_AGE_VECTORS or place them at "
            "../shared/testdata/age"
        )
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def age_cli() -> str:
    return require_tool("age")


@pytest.fixture(scope="session")
def age_keygen_cli() -> str:
    return require_tool("age-keygen")
