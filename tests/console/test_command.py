"""``doorward owner console`` as a process: it prints its URL (and nothing else holds the
secret), the URL opens a session, Ctrl-C stops it; without owner keys it says what to run."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from crypto.keys import KeyBundle
from hub.client.profile import Profile

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


def _command(profile: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hub.cli.main",
        "owner",
        "console",
        "--no-browser",
        "--profile",
        str(profile),
        *extra,
    ]


def test_the_console_prints_its_url_opens_a_session_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    directory = tmp_path / "owner"
    Profile(directory, "owner").create(KeyBundle.generate("x25519"), {"name": "Ada"})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        _command(directory),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        prefix = "doorward: the owner's console is at "
        assert first.startswith(prefix), first
        url = urlsplit(first[len(prefix) :].strip())
        assert (url.scheme, url.hostname, url.path) == ("http", "127.0.0.1", "/")
        secret = url.query.removeprefix("key=")
        assert len(secret) >= 43
        connection = http.client.HTTPConnection("127.0.0.1", url.port, timeout=10)
        connection.request("GET", f"/?{url.query}")
        answer = connection.getresponse()
        assert answer.status == 303
        assert "HttpOnly" in (answer.getheader("Set-Cookie") or "")
        connection.close()
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert secret not in out
    assert secret not in err
    assert "console stopped" in err


def test_without_owner_keys_it_says_what_to_run(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        _command(tmp_path / "nobody"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.startswith("doorward: error: ")
    assert "doorward owner init" in run.stderr
