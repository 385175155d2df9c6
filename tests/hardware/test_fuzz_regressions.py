"""Inputs the fuzzers (tests/fuzz, fuzz/run.py) found crashing the scenario reader; each is now a
ScenarioError that names the file."""

from __future__ import annotations

import pytest

from hardware.errors import ScenarioError
from hardware.sim import parse_scenario

CAMERA = "[camera]\nwidth = 640\nheight = 360\nfps = 15\nseconds = 4\n"


@pytest.mark.parametrize(
    "value",
    ["[" * 5000 + "]" * 5000, "{a = " * 2000 + "1" + "}" * 2000],
    ids=["arrays", "inline-tables"],
)
def test_scenario_rejects_a_value_nested_too_deeply(value: str) -> None:
    with pytest.raises(ScenarioError, match=r"^deep\.toml: .*nested too deeply"):
        parse_scenario(f"{CAMERA}[expect]\nmax_clips = {value}\n", "deep.toml")
