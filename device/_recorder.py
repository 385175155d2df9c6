"""The recorder state machine: idle → recording → post_roll → idle, driven by motion, presses, time.

A pure core: it takes ``(motion, press, pts_s, keyframe)`` per frame and answers what to do with that
frame's packets. It knows nothing of encoders, files or clocks.
"""

from __future__ import annotations

import enum
import logging

from device._config import RecorderConfig

__all__ = ["Recorder", "RecorderAction", "RecorderState"]

logger = logging.getLogger(__name__)


class RecorderState(enum.Enum):
    IDLE = "idle"
    RECORDING = "recording"
    POST_ROLL = "post_roll"


class RecorderAction(enum.Enum):
    """What the caller does with the current frame's packets."""

    NONE = "none"  # idle: packets only go to the pre-roll buffer
    START = "start"  # open a clip with the pre-roll buffer (which ends with this frame)
    RECORD = "record"  # append to the open clip
    SPLIT = "split"  # the clip reached max_clip_s: close it, open a new one starting at this frame
    STOP = "stop"  # append this frame, then close the clip


class Recorder:
    """Decides, frame by frame, when clips start and end."""

    def __init__(self, config: RecorderConfig | None = None, *, name: str = "") -> None:
        self._config = config or RecorderConfig()
        self._name = name
        self._state = RecorderState.IDLE
        self._clip_start_s = 0.0
        self._post_roll_until_s = 0.0

    @property
    def state(self) -> RecorderState:
        return self._state

    def step(self, *, motion: bool, press: bool, pts_s: float, keyframe: bool) -> RecorderAction:
        """Feed one frame; ``keyframe`` says whether a new clip could start at this frame."""
        triggered = motion or press
        if self._state is RecorderState.IDLE:
            if not triggered:
                return RecorderAction.NONE
            self._clip_start_s = pts_s
            self._set_state(RecorderState.RECORDING, pts_s)
            return RecorderAction.START

        if triggered:
            if self._state is RecorderState.POST_ROLL:
                self._set_state(RecorderState.RECORDING, pts_s)
        elif self._state is RecorderState.RECORDING:
            self._post_roll_until_s = pts_s + self._config.post_roll_s
            self._set_state(RecorderState.POST_ROLL, pts_s)

        if self._state is RecorderState.POST_ROLL and pts_s >= self._post_roll_until_s:
            self._set_state(RecorderState.IDLE, pts_s)
            return RecorderAction.STOP
        if keyframe and pts_s - self._clip_start_s >= self._config.max_clip_s:
            logger.info("recorder.split name=%s pts_s=%.3f", self._name, pts_s)
            self._clip_start_s = pts_s
            return RecorderAction.SPLIT
        return RecorderAction.RECORD

    def _set_state(self, state: RecorderState, pts_s: float) -> None:
        logger.info(
            "recorder.state name=%s from=%s to=%s pts_s=%.3f",
            self._name,
            self._state.value,
            state.value,
            pts_s,
        )
        self._state = state
