"""The README states the default policy that the code applies."""

from __future__ import annotations

import json
from pathlib import Path

from consent import DEFAULT_POLICY


def test_readme_default_policy_is_the_tested_one() -> None:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## For homeowners", 1)[1]
    block = section.split("```json\n", 1)[1].split("```", 1)[0]
    assert json.loads(block) == DEFAULT_POLICY.to_json()
