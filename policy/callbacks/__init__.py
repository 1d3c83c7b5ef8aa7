"""The callbacks of ours that a policy compiles to, for what Keras has no callback of its own.

One idea per module: :mod:`.condition` (``stop when`` conditions), :mod:`.budget`
(``stop after``), :mod:`.checkpoints` (every N epochs, top k), :mod:`.schedules`
(learning-rate schedules), :mod:`.metric_check` (strict missing-metric check),
:mod:`.folders` (the folder of a CSV log),
:mod:`.recorder` (when TerminateOnNaN fired). Importing this package imports keras.
"""

from __future__ import annotations

from policy.callbacks.base import StopRecord
from policy.callbacks.budget import StopAfterEpochs, StopAfterSteps, StopAfterTime
from policy.callbacks.checkpoints import SaveEveryEpochs, SaveTop
from policy.callbacks.condition import StopWhen
from policy.callbacks.folders import CreateFolder
from policy.callbacks.metric_check import MetricCheck
from policy.callbacks.recorder import TerminateOnNaNRecorder
from policy.callbacks.schedules import CosineTo, Schedule, ScheduledLearningRate, StepDecay, WarmUp

__all__ = [
    "CosineTo",
    "CreateFolder",
    "MetricCheck",
    "SaveEveryEpochs",
    "SaveTop",
    "Schedule",
    "ScheduledLearningRate",
    "StepDecay",
    "StopAfterEpochs",
    "StopAfterSteps",
    "StopAfterTime",
    "StopRecord",
    "StopWhen",
    "TerminateOnNaNRecorder",
    "WarmUp",
]
