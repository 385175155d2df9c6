"""Each consent module imports on its own, and none pulls in the device package or PyAV."""

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
def test_imports_alone_without_device_or_av(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'device', 'av', 'hub', "
        "'hardware', 'aiohttp', 'asyncio'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
