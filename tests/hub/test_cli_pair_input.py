"""Where ``doorward owner pair`` takes the setup URI from: the command line, or standard input."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from hub.cli import cmd_owner as _cli_owner


def _run(monkeypatch: pytest.MonkeyPatch, profile: Path, *args: str, stdin: str) -> tuple[int, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = _cli_owner.main(["pair", *args, "--profile", str(profile)])
    return code, err.getvalue()


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    with contextlib.redirect_stdout(io.StringIO()):
        assert _cli_owner.main(["init", "--profile", str(tmp_path), "--recipient", "x25519"]) == 0
    return tmp_path


@pytest.mark.parametrize("args", [(), ("-",)])
def test_the_uri_is_read_from_standard_input(
    monkeypatch: pytest.MonkeyPatch, profile: Path, args: tuple[str, ...]
) -> None:
    # A URI that does not parse shows it was read: its error, not the empty-input one.
    code, err = _run(monkeypatch, profile, *args, stdin="doorward://pair?x=1\n")
    assert code == 1
    assert err.splitlines()[-1] == "doorward: error: pairing URI has an unknown field 'x'"


def test_nothing_on_standard_input_says_how_to_give_it(
    monkeypatch: pytest.MonkeyPatch, profile: Path
) -> None:
    code, err = _run(monkeypatch, profile, stdin="")
    assert code == 1
    assert err.splitlines()[-1] == (
        "doorward: error: no setup URI or code was given; type the one the doorbell printed, "
        "or pipe it in: doorward owner pair - < FILE"
    )


def test_a_malformed_code_is_not_echoed(monkeypatch: pytest.MonkeyPatch, profile: Path) -> None:
    code, err = _run(monkeypatch, profile, stdin="1234567\n")
    assert code == 1
    assert "1234567" not in err
    assert err.splitlines()[-1] == (
        "doorward: error: setup code must be 8 digits, like 1234-5678; check the code shown by "
        "the doorbell and type it again"
    )
