"""Shared test kit: whether we run in CI, where the published age vectors live, and which peer
tools are installed."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def age_vectors_dir() -> Path | None:
    """The C2SP age test vectors: $DOORWARD_AGE_VECTORS, else ../shared/testdata/age."""
    env = os.environ.get("DOORWARD_AGE_VECTORS")
    candidates = [Path(env)] if env else []
    candidates.append(_REPO.parent / "shared" / "testdata" / "age")
    for path in candidates:
        if path.is_dir() and any(path.iterdir()):
            return path
    return None


def require_tool(name: str) -> str:
    """Path of a peer command-line tool; a failure in CI, a skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"`{name}` is not installed (apt-get install {name})"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def serve_command(tmp_path: Path, camera: str, *extra: str) -> list[str]:
    """``doorward serve -v`` as a test runs it: ``tmp_path``'s doorward.toml and data folder,
    the camera spec ``camera``, the API on a free loopback port, no zeroconf; then ``extra``."""
    return [
        sys.executable,
        "-m",
        "hub.cli.main",
        "-v",
        "serve",
        "--config",
        str(tmp_path / "doorward.toml"),
        "--data",
        str(tmp_path / "data"),
        "--camera",
        camera,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-advertise",
        *extra,
    ]


def child_env(*drop: str) -> dict[str, str]:
    """This process's environment for a child that runs the repository's code, without ``drop``."""
    env = {key: value for key, value in os.environ.items() if key not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
    return env
