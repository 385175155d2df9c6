"""The service side of systemd: READY once every camera records, STATUS, and a watchdog that means it.

:class:`HealthProbe` reads the running device (each pipeline's progress, its task, its camera's
reconnecting flag, the consent writer's backlog) into the reports :func:`hub.server.health.judge`
takes. :class:`Supervisor` runs beside the device: it sends ``READY=1`` once every camera has taken
frames (the API already listens by then), then at every tick sends ``WATCHDOG=1`` only while the
judgement is healthy, and a new ``STATUS=`` whenever the line changes. A camera that is stuck is
logged once when it becomes stuck and once when it recovers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from device import CameraPipeline
from hardware import CameraSource, reconnecting
from hub.server.health import (
    CameraReport,
    Deadlines,
    Health,
    WriterReport,
    judge,
    status_line,
)
from hub.server.sdnotify import Notifier, monotonic_usec
from hub.server.worker import SerialWorker

__all__ = ["HealthProbe", "Supervisor"]

logger = logging.getLogger(__name__)

STARTING_POLL_S = 0.1  # how often the cameras are looked at before READY
STATUS_EVERY_S = 5.0  # the tick without a watchdog (STATUS updates only)


class HealthProbe:
    """Reads the running device's progress for the watchdog (on the event loop)."""

    def __init__(
        self,
        pipelines: Mapping[str, CameraPipeline],
        runs: Mapping[str, asyncio.Future[Any]],
        sources: Mapping[str, CameraSource],
        writer: SerialWorker,
        *,
        owners: Callable[[], int],
        connections: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pipelines = pipelines
        self._runs = runs
        self._sources = sources
        self._writer = writer
        self._owners = owners
        self._connections = connections
        self.clock = clock

    def health(self, deadlines: Deadlines) -> Health:
        """The judgement now."""
        reports = []
        for name, pipeline in self._pipelines.items():
            run = self._runs.get(name)
            error = None
            if run is not None and run.done() and not run.cancelled():
                failure = run.exception()
                error = None if failure is None else type(failure).__name__
            reports.append(
                CameraReport(
                    name,
                    pipeline.progress,
                    reconnecting=reconnecting(self._sources.get(name)),
                    error=error,
                )
            )
        pending, oldest_s = self._writer.backlog()
        return judge(reports, WriterReport(pending, oldest_s), self.clock(), deadlines)

    def status(self, health: Health) -> str:
        """The STATUS line for ``health``."""
        return status_line(health, owners=self._owners(), connections=self._connections())


class Supervisor:
    """Tells the service manager how the device is: READY, STATUS, WATCHDOG, RELOADING, STOPPING."""

    def __init__(
        self,
        probe: HealthProbe,
        notifier: Notifier,
        *,
        deadlines: Callable[[], Deadlines],
        watchdog_usec: int | None,
    ) -> None:
        self._probe = probe
        self._notifier = notifier
        self._deadlines = deadlines
        self._watchdog_usec = watchdog_usec
        self._last_status: str | None = None
        self._stuck: dict[str, str] = {}
        self._stopping = False
        self.ready = asyncio.Event()

    @property
    def tick_s(self) -> float:
        """Seconds between checks: half the watchdog interval (as sd_watchdog_enabled advises)."""
        if self._watchdog_usec is None:
            return STATUS_EVERY_S
        return min(STATUS_EVERY_S, self._watchdog_usec / 2_000_000)

    async def run(self) -> None:
        """Wait until every camera records, send READY=1, then check and ping until cancelled."""
        started = self._probe.clock()
        health = self._probe.health(self._deadlines())
        self._notifier.send(STATUS=f"starting: {self._probe.status(health)}")
        # Not ready while a camera has no frame yet, nor while one is stuck: systemd's start
        # timeout then restarts a doorbell that never got going.
        while not (health.recording and health.ok):
            await asyncio.sleep(STARTING_POLL_S)
            if self._stopping:
                return
            health = self._probe.health(self._deadlines())
        status = self._probe.status(health)
        self._last_status = status
        self._notifier.send(READY=1, STATUS=status)
        self.ready.set()
        logger.info(
            "serve.recording cameras=%d after_s=%.3f notify=%s watchdog_s=%s",
            len(health.cameras),
            self._probe.clock() - started,
            "yes" if self._notifier.enabled else "no",
            "off" if self._watchdog_usec is None else f"{self._watchdog_usec / 1e6:g}",
        )
        while not self._stopping:
            self.check()
            await asyncio.sleep(self.tick_s)

    def check(self) -> Health:
        """One tick: judge, log what became stuck or recovered, ping if healthy, update STATUS."""
        health = self._probe.health(self._deadlines())
        if self._stopping:
            return health
        self._log_changes(health)
        fields: dict[str, str | int] = {}
        if health.ok and self._watchdog_usec is not None:
            fields["WATCHDOG"] = 1
        status = self._probe.status(health)
        if status != self._last_status:
            fields["STATUS"] = status
            self._last_status = status
        if fields:
            self._notifier.send(**fields)
        return health

    def reloading(self) -> None:
        """Before re-reading the config (SIGHUP)."""
        self._notifier.send(RELOADING=1, MONOTONIC_USEC=monotonic_usec(), STATUS="reloading config")

    def reloaded(self, note: str) -> None:
        """After the reload: ready again, with ``note`` (what was applied) as the status."""
        self._last_status = note
        self._notifier.send(READY=1, STATUS=note)

    def stopping(self) -> None:
        """When shutdown begins (every camera now finishes its open segment): no more pings."""
        self._stopping = True
        self._notifier.send(STOPPING=1, STATUS="stopping: finishing open segments")

    def _log_changes(self, health: Health) -> None:
        for verdict in health.cameras:
            was = self._stuck.get(verdict.name)
            if verdict.state.stuck and was != verdict.state.value:
                self._stuck[verdict.name] = verdict.state.value
                logger.error(
                    "watchdog.stuck camera=%s state=%s quiet_s=%.1f",
                    verdict.name,
                    verdict.state.value,
                    verdict.quiet_s,
                )
            elif not verdict.state.stuck and was is not None:
                del self._stuck[verdict.name]
                logger.warning(
                    "watchdog.recovered camera=%s state=%s", verdict.name, verdict.state.value
                )
        writer_was = self._stuck.get("<writer>")
        if health.writer_stuck_s is not None and writer_was is None:
            self._stuck["<writer>"] = "stuck"
            logger.error(
                "watchdog.stuck writer pending=%d waiting_s=%.1f",
                health.writer_pending,
                health.writer_stuck_s,
            )
        elif health.writer_stuck_s is None and writer_was is not None:
            del self._stuck["<writer>"]
            logger.warning("watchdog.recovered writer pending=%d", health.writer_pending)
