"""Each consent module imports on its own, without asyncio. Which packages consent may import (not
device, hardware, hub, aiohttp or PyAV) is for the import-linter contracts in pyproject.toml;
asyncio is in the standard library, which import-linter does not see."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = [
    "consent.errors",
    "consent.models",
    "consent.requests",
    "consent._policy",
    "consent.policy_doc",
    "consent.tokens",
    "consent.clips",
    "consent.clip_manifest",
    "consent.owner",
    "consent.desk",
    "consent._release_check",
    "consent._tables",
    "consent.bundle",
    "consent.requester",
]


@pytest.mark.parametrize("module", MODULES)
def test_imports_alone_without_asyncio(module: str) -> None:
    code = f"import sys, {module}\nprint('asyncio' in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
