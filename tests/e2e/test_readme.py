"""The README's promises: its Python example runs, and its two commands are the ones CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_python_example_runs() -> None:
    blocks = [b.split("```", 1)[0] for b in README.split("```python\n")[1:]]
    [source] = [b for b in blocks if b.startswith("from crypto import age")]
    exec(compile(source, "README.md", "exec"), {})  # noqa: S102 - our own documentation


def test_quickstart_has_exactly_two_commands_and_ci_runs_the_test_one() -> None:
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = [block.split("```", 1)[0].strip() for block in quickstart.split("```sh\n")[1:]]
    assert len(commands) == 2
    assert commands[0].endswith("doorward demo")
    ci = (ROOT / ".ci" / "run").read_text()
    for part in commands[1].split(" && "):
        assert part in ci, part
