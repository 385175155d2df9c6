"""Hardware test kit: a hand-driven clock and small scenario texts."""

from __future__ import annotations


class FakeClock:
    """A clock that only moves when slept on or advanced; records every sleep."""

    def __init__(self, start_wall: float = 1_800_000_000.0) -> None:
        self.t = 0.0
        self.start_wall = start_wall
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.start_wall + self.t

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)


def camera_toml(
    width: object = 160,
    height: object = 96,
    fps: object = 10,
    seconds: object = 3.0,
    **extra: object,
) -> str:
    lines = [
        "[camera]",
        f"width = {width}",
        f"height = {height}",
        f"fps = {fps}",
        f"seconds = {seconds}",
    ]
    for key, value in extra.items():
        lines.append(f"{key} = {str(value).lower() if isinstance(value, bool) else value}")
    return "\n".join(lines) + "\n"
