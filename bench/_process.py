"""Stopping a benchmark's child process (``doorward serve``, a static server): SIGTERM, so it
shuts down as a service manager would stop it, then SIGKILL if it is still there after
``timeout_s``."""

from __future__ import annotations

import asyncio

__all__ = ["stop_process"]


async def stop_process(process: asyncio.subprocess.Process, timeout_s: float = 30.0) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        async with asyncio.timeout(timeout_s):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
