"""What a SIGHUP applies (hub.server.reload): reloadable options at once, the rest after a restart."""

from __future__ import annotations

from dataclasses import replace

from hub.server.config import ServeConfig
from hub.server.reload import RunningConfig, plan_reload


def test_reloadable_options_apply_and_the_rest_wait_for_a_restart() -> None:
    running = ServeConfig(port=8443, retention_days=30.0)
    loaded = replace(
        running, retention_days=7.0, log_repeats=2, port=9443, cameras=("a=simulated",)
    )
    plan = plan_reload(running, loaded)
    assert plan.applied == ("retention_days", "log_repeats")
    assert plan.needs_restart == ("cameras", "port")
    assert plan.config.retention_days == 7.0
    assert plan.config.log_repeats == 2
    assert plan.config.port == 8443
    assert plan.config.cameras == running.cameras


def test_subscribers_hear_the_applied_config() -> None:
    settings = RunningConfig(ServeConfig())
    heard: list[ServeConfig] = []
    settings.subscribe(heard.append)
    plan = settings.apply(replace(ServeConfig(), watchdog_stall_s=5.0))
    assert plan.applied == ("watchdog_stall_s",)
    assert settings.current.watchdog_stall_s == 5.0
    assert heard == [settings.current]


def test_an_unchanged_config_applies_nothing() -> None:
    plan = plan_reload(ServeConfig(), ServeConfig())
    assert plan.applied == ()
    assert plan.needs_restart == ()
