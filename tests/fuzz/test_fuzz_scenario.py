"""Fuzz the scenario TOML reader (``doorward harness run FILE`` reads files anyone may hand over).

Seeds are the scenarios shipped in ``scenarios/`` and the simulator's default; every mutant
either gives a Scenario or a ``ScenarioError`` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardware.errors import ScenarioError
from hardware.sim import Scenario, parse_scenario
from tests.fuzz.kit import fuzz_settings, parse_or_refuse, text_target

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.timeout(120)]

_REPO = Path(__file__).resolve().parents[2]
SEEDS = [p.read_text(encoding="utf-8") for p in sorted((_REPO / "scenarios").glob("*.toml"))]
SEEDS.append((_REPO / "hardware" / "sim" / "default_scenario.toml").read_text(encoding="utf-8"))
NAME = "fuzzed.toml"

_LINES = st.sampled_from(
    [
        "[camera]",
        "[[actor]]",
        "[[light]]",
        "[[press]]",
        "[[fault]]",
        "[expect]",
        "[privacy]",
        "[motion]",
        "[unknown]",
        "[[camera]]",
        "width = 640",
        "height = 360",
        "fps = 15",
        "seconds = 30",
        "seconds = 1e308",
        "seconds = nan",
        "seconds = inf",
        "kind = 'person'",
        "kind = 'clock_jump'",
        "kind = 'flicker'",
        "at_s = 1",
        "enter_s = 0",
        "leave_s = 0",
        "path = [[0.1, 0.2]]",
        "path = [[0.1]]",
        "times = [0]",
        "times = []",
        "zones = [[[0, 0], [1, 0], [1, 1]]]",
        "masks = [[[0, 0], [1, 0]]]",
        "start = 2026-06-01T18:30:00Z",
        "start = 2026-06-01",
        "jump_s = -1e30",
        "duration_s = 0",
        "seed = 18446744073709551616",
        "description = '''multi\nline'''",
        "camera = 1",
        "actor = [1]",
        "'' = 1",
        "a.b.c = 1",
        "x = " + "[" * 2000 + "]" * 2000,
        "x = " + "{a=" * 600 + "1" + "}" * 600,
    ]
)


@text_target(SEEDS, share=3, raw_max_size=256)
def test_scenario_text(text: str) -> None:
    result = parse_or_refuse(lambda: parse_scenario(text, NAME), (ScenarioError,))
    if isinstance(result, ScenarioError):
        assert str(result).startswith(NAME)
    else:
        assert isinstance(result, Scenario)


@fuzz_settings(share=3)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 40), _LINES), max_size=6))
def test_scenario_lines(seed: str, inserts: list[tuple[int, str]]) -> None:
    lines = seed.splitlines()
    for at, line in inserts:
        lines.insert(at % (len(lines) + 1), line)
    text = "\n".join(lines) + "\n"
    result = parse_or_refuse(lambda: parse_scenario(text, NAME), (ScenarioError,))
    if isinstance(result, ScenarioError):
        assert str(result).startswith(NAME)
