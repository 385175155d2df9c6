"""SIGHUP: read the config again and apply what can change while the cameras record.

:func:`plan_reload` compares the running config with the one just read. The options in
:data:`RELOADABLE` take effect at once (retention from its next pass, within a minute); any other
changed option is reported as needing a restart and keeps its running value, because it is baked
into something that runs: the cameras and their pipelines (``cameras``, recording, privacy zones,
motion), the listening sockets (``host``, ``port``, ``live_page_port``), the data folder, the
API's limits and the zeroconf record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from hub.server.config import ServeConfig

__all__ = ["RELOADABLE", "ReloadPlan", "RunningConfig", "plan_reload"]

logger = logging.getLogger(__name__)

RELOADABLE = (
    "retention_days",
    "max_storage_mb",
    "log_repeats",
    "log_summary_s",
    "watchdog_stall_s",
)
"""Options a SIGHUP (``systemctl reload doorward``) applies without a restart."""


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """The config to run with after a reload, what changed in it, and what waits for a restart."""

    config: ServeConfig
    applied: tuple[str, ...]
    needs_restart: tuple[str, ...]


def plan_reload(running: ServeConfig, loaded: ServeConfig) -> ReloadPlan:
    """Take the reloadable options from ``loaded``; list the other options that differ."""
    changed = [
        f.name for f in fields(ServeConfig) if getattr(running, f.name) != getattr(loaded, f.name)
    ]
    applied = tuple(name for name in changed if name in RELOADABLE)
    needs_restart = tuple(name for name in changed if name not in RELOADABLE)
    config = replace(running, **{name: getattr(loaded, name) for name in applied})
    return ReloadPlan(config, applied, needs_restart)


class RunningConfig:
    """The config the running device reads, which a reload replaces; the parts that hold a copy
    (the log filter) subscribe to hear of it. Used on the event loop only."""

    def __init__(self, config: ServeConfig) -> None:
        self.current = config
        self._listeners: list[Callable[[ServeConfig], None]] = []

    def subscribe(self, listener: Callable[[ServeConfig], None]) -> None:
        """Call ``listener(config)`` after each reload."""
        self._listeners.append(listener)

    def apply(self, loaded: ServeConfig) -> ReloadPlan:
        """Apply a freshly read config (see :func:`plan_reload`); returns what was done."""
        plan = plan_reload(self.current, loaded)
        self.current = plan.config
        for listener in self._listeners:
            listener(plan.config)
        return plan
