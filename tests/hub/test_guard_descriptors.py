"""Under a low descriptor limit, a flood of held and failing connections never makes recording
fail, and the log stays small: ``doorward serve`` in a subprocess with ``RLIMIT_NOFILE`` at 256
(soft and hard), a clip starting every 3 s (each new clip opens new files), while strangers from 24 addresses hold as many idle
connections as they can, then open connections that send broken handshakes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.hub.attackkit import (
    HOST,
    Connection,
    Doorbell,
    attacker_address,
    close_all,
    paired_data_dir,
)

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
NOFILE = 256
ATTACK_S = 8.0
GARBAGE_S = 3.0
ADDRESSES = 24
PER_ADDRESS = 25  # under the per-address cap: only the server-wide cap is left to hold them

SCENARIO = """[camera]
width = 160
height = 120
fps = 10
seconds = 300
seed = 3
{presses}
"""

CONFIG = """pre_roll_s = 1.0
post_roll_s = 0.5
segment_s = 1.0
"""


@dataclass
class Attacked:
    before: dict[str, Any]
    after: dict[str, Any]
    log: str
    log_lines_during_attack: int
    attempts: int


def _low_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


async def _hold(port: int, source: str, deadline: float, counts: dict[str, int]) -> None:
    """Keep PER_ADDRESS idle connections from ``source`` open until ``deadline``, opening a new
    one whenever the server closes one."""
    held: list[Connection] = []
    try:
        while time.monotonic() < deadline:
            held = [c for c in held if not c[0].at_eof() and c[0].exception() is None]
            while len(held) < PER_ADDRESS and time.monotonic() < deadline:
                counts["attempts"] += 1
                try:
                    held.append(
                        await asyncio.wait_for(
                            asyncio.open_connection(HOST, port, local_addr=(source, 0)), 5
                        )
                    )
                except (OSError, TimeoutError):
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)
    finally:
        close_all(held)


async def _garbage(port: int, source: str, deadline: float, counts: dict[str, int]) -> None:
    """Open connections from ``source`` that send a broken ClientHello (a failed handshake)."""
    while time.monotonic() < deadline:
        counts["attempts"] += 1
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, port, local_addr=(source, 0)), 5
            )
        except (OSError, TimeoutError):
            await asyncio.sleep(0.05)
            continue
        writer.write(b"\x16\x03\x01\x00\x05hello" * 4)
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(reader.read(), 1.0)
        writer.transport.abort()


async def _attack() -> Attacked:
    import tempfile

    from hub.client import DoorwardClient

    with tempfile.TemporaryDirectory(prefix="doorward-nofile-") as tmp:
        work = Path(tmp)
        data = work / "data"
        owner, device_id, fingerprint = paired_data_dir(data)
        presses = "".join(f"\n[[press]]\nat_s = {s}\n" for s in range(1, 300, 3))
        scenario = work / "cam.toml"
        scenario.write_text(SCENARIO.format(presses=presses))
        config = work / "serve.toml"
        config.write_text(CONFIG)
        log_path = work / "serve.log"
        command = [
            sys.executable, "-m", "hub.cli.cmd_serve", "--config", str(config),
            "--data", str(data), "--camera", f"front=simulated:{scenario}",
            "--host", HOST, "--port", "0", "--no-advertise",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                *command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log,
                preexec_fn=_low_limit,
            )  # fmt: skip
            try:
                assert process.stdout is not None
                line = b""
                async with asyncio.timeout(60):
                    while not line.startswith(b"doorward: serving "):
                        line = await process.stdout.readline()
                        assert line, log_path.read_text(errors="replace")[-3000:]
                url = line.split()[2].decode()
                doorbell = Doorbell(url, int(url.rsplit(":", 1)[1]), fingerprint, device_id, owner)

                def client() -> DoorwardClient:
                    return doorbell.client()

                async with client() as phone:
                    await asyncio.sleep(3.0)  # recording has begun
                    before = await phone.metrics()
                log_size = log_path.stat().st_size
                counts = {"attempts": 0}
                # Idle connections hold every descriptor they can; then broken handshakes.
                deadline = time.monotonic() + ATTACK_S
                await asyncio.gather(
                    *(
                        _hold(doorbell.port, attacker_address(i), deadline, counts)
                        for i in range(ADDRESSES)
                    )
                )
                deadline = time.monotonic() + GARBAGE_S
                await asyncio.gather(
                    *(
                        _garbage(doorbell.port, attacker_address(i), deadline, counts)
                        for i in range(ADDRESSES)
                    )
                )
                during = log_path.read_bytes()[log_size:].decode(errors="replace")
                async with asyncio.timeout(60):
                    while True:  # the device is reachable again once the attack ends
                        with contextlib.suppress(Exception):
                            async with client() as phone:
                                after = await phone.metrics()
                                break
                        await asyncio.sleep(1.0)
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(process.wait(), 30)
                    except TimeoutError:
                        process.kill()
                        await process.wait()
        return Attacked(
            before=before,
            after=after,
            log=log_path.read_text(errors="replace"),
            log_lines_during_attack=len(during.splitlines()),
            attempts=counts["attempts"],
        )


@pytest.fixture(scope="module")
def attacked() -> Attacked:
    return asyncio.run(_attack())


def test_holding_every_descriptor_never_fails_recording(attacked: Attacked) -> None:
    assert attacked.attempts > NOFILE  # the strangers asked for more than the process could hold
    before, after = attacked.before["cameras"]["front"], attacked.after["cameras"]["front"]
    assert after["errors"] == before["errors"] == 0
    assert after["segments"] > before["segments"]  # it went on recording through the attack
    assert "Too many open files" not in attacked.log
    assert "pipeline.clip_refused" not in attacked.log


def test_a_flood_of_failing_connections_logs_a_bounded_number_of_lines(
    attacked: Attacked,
) -> None:
    assert attacked.attempts > NOFILE
    # Counted and summarised, never one line (or traceback) per connection.
    assert attacked.log_lines_during_attack <= 40
    assert "Traceback" not in attacked.log
