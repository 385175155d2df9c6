"""`doorward serve` under a service manager: this test plays systemd's part, with a real datagram
socket as NOTIFY_SOCKET and WATCHDOG_USEC set, around a real `doorward serve` process recording a
simulated camera. READY comes only once the camera records and the API listens; the watchdog
pings go on while the camera reconnects and stop when it hangs; SIGHUP reloads; SIGTERM stops."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub.systemdkit import FakeSystemd, Note
from tests.kit import child_env, serve_command

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s

QUIET_SCENE = """\
[camera]
width = 320
height = 180
fps = 10
seconds = 600
seed = 3
"""
# Reconnecting for 5 s (longer than the 1.5 s deadline), then hung for good at 12 s.
FAULTY_SCENE = (
    QUIET_SCENE
    + """
[[fault]]
kind = "disconnect"
at_s = 4
duration_s = 5

[[fault]]
kind = "hang"
at_s = 12
"""
)


@pytest.fixture
def systemd() -> Iterator[FakeSystemd]:
    manager = FakeSystemd()
    yield manager
    manager.close()


def start_serve(
    tmp_path: Path, systemd: FakeSystemd, scene: str, config: str
) -> subprocess.Popen[str]:
    (tmp_path / "scene.toml").write_text(scene)
    (tmp_path / "doorward.toml").write_text(config)
    env = child_env("JOURNAL_STREAM", "INVOCATION_ID", "NOTIFY_SOCKET", "WATCHDOG_PID")
    env.update(NOTIFY_SOCKET=systemd.address, WATCHDOG_USEC=str(WATCHDOG_USEC))
    return subprocess.Popen(
        serve_command(tmp_path, f"front=simulated:{tmp_path / 'scene.toml'}"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "serve.log").open("w"),
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(60)


def test_ready_after_recording_then_reload_then_stopping(
    tmp_path: Path, systemd: FakeSystemd
) -> None:
    process = start_serve(tmp_path, systemd, QUIET_SCENE, "watchdog_stall_s = 5.0\n")
    try:
        ready = systemd.until("READY", "1")
        # Before READY the manager heard that the service was starting, and nothing else.
        before = [n.fields for n in systemd.seen[:-1]]
        assert before
        assert before[0]["STATUS"].startswith("starting: front starting; 0 owners;")
        assert all(set(fields) == {"STATUS"} for fields in before)
        # READY says the camera records (a frame went through detector and encoder)...
        assert ready.fields["STATUS"].startswith("front recording; 0 owners;")
        log = (tmp_path / "serve.log").read_text()
        assert "pipeline.start camera=front" in log
        # ...and the API listens.
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        while "serving https://" not in url:
            url = process.stdout.readline().strip()
        port = int(re.search(r"https://127\.0\.0\.1:(\d+)", url).group(1))  # type: ignore[union-attr]
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        systemd.until("WATCHDOG", "1")
        systemd.until("WATCHDOG", "1")

        # SIGHUP: a reloadable option applies, another waits for a restart.
        (tmp_path / "doorward.toml").write_text(
            'watchdog_stall_s = 5.0\nretention_days = 7.0\nname = "Porch"\n'
        )
        process.send_signal(signal.SIGHUP)
        reloading = systemd.until("RELOADING", "1")
        assert re.fullmatch(r"\d+", reloading.fields["MONOTONIC_USEC"])
        assert (
            int(reloading.fields["MONOTONIC_USEC"])
            <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        )
        again = systemd.until("READY", "1")
        assert again.fields["STATUS"] == "reloaded: retention_days; restart to apply name"

        # A broken file is refused; the service goes on with what it runs.
        (tmp_path / "doorward.toml").write_text("retention_days = 'soon'\n")
        process.send_signal(signal.SIGHUP)
        systemd.until("RELOADING", "1")
        refused = systemd.until("READY", "1")
        assert refused.fields["STATUS"].startswith(
            "reload failed, running on the previous config: "
        )
        systemd.until("WATCHDOG", "1")

        process.send_signal(signal.SIGTERM)
        stopping = systemd.until("STOPPING", "1")
        assert stopping.fields["STATUS"] == "stopping: finishing open segments"
        assert process.wait(60) == 0
    finally:
        stop(process)
    log = (tmp_path / "serve.log").read_text()
    assert "serve.reloaded applied=retention_days needs_restart=name" in log
    assert "serve.reload_failed" in log


def test_pings_go_on_while_reconnecting_and_stop_when_the_camera_hangs(
    tmp_path: Path, systemd: FakeSystemd
) -> None:
    process = start_serve(tmp_path, systemd, FAULTY_SCENE, "watchdog_stall_s = 1.5\n")
    try:
        systemd.until("READY", "1")
        systemd.until("WATCHDOG", "1")
        systemd.until("STATUS", r"front reconnecting \d+s;.*")
        # Reconnecting for longer than the deadline: still pinged (the note says how long).
        long_gone = systemd.until("STATUS", r"front reconnecting ([3-9]|\d\d)s;.*", timeout_s=30)
        assert long_gone.fields.get("WATCHDOG") == "1"
        back = systemd.until("STATUS", r"front recording;.*", timeout_s=30)
        assert "WATCHDOG" in back.fields
        during = systemd.seen[systemd.seen.index(long_gone) : systemd.seen.index(back)]
        assert not any("stalled" in n.fields.get("STATUS", "") for n in during)

        # Hung for good: the next status says stalled, and no ping follows it.
        stalled = systemd.until("STATUS", r"front stalled \d+s;.*", timeout_s=30)
        assert "WATCHDOG" not in stalled.fields
        after: list[Note] = []
        end = time.monotonic() + 6 * WATCHDOG_USEC / 2e6  # six ticks of the watchdog
        while time.monotonic() < end:
            try:
                after.append(systemd.next(timeout_s=max(0.05, end - time.monotonic())))
            except queue.Empty:
                break
        assert after, "the service kept updating its status"
        assert all("WATCHDOG" not in note.fields for note in after)
        assert all(note.fields.get("STATUS", "").startswith("front stalled") for note in after)

        process.send_signal(signal.SIGTERM)
        systemd.until("STOPPING", "1")
        assert process.wait(60) == 0
    finally:
        stop(process)
    log = (tmp_path / "serve.log").read_text()
    assert re.search(r"watchdog\.stuck camera=front state=stalled quiet_s=\d", log)
    assert "watchdog.stuck camera=front state=reconnecting" not in log
