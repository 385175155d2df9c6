"""Shared fixtures: the published age vectors and the peer `age` tools (tests.kit finds them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit import age_vectors_dir, in_ci, require_tool


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
