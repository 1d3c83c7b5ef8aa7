"""The callbacks of ours that a policy compiles to, for what Keras has no callback of its own.

One idea per module: :mod:`.condition` (``stop when`` conditions), :mod:`.budget`
(``stop after``), :mod:`.checkpoints` (every N epochs, top k), :mod:`.schedules`
(learning-rate schedules), :mod:`.metric_check` (strict missing-metric check),
:mod:`.folders` (the folder of a CSV log), :mod:`.lr_log` (``log lr``), :mod:`.baseline` (EarlyStopping's baseline on a
Keras that dropped it), :mod:`.fit_start` (Keras's own callbacks made fresh for each ``fit``),
:mod:`.recorder` (when TerminateOnNaN fired), :mod:`.minimum` (``train at least``), :mod:`.rollback`
(``multiply lr ..., restore best``), :mod:`.atomic` (files that appear only when
complete), :mod:`.state` and :mod:`.backup` (backups that resume every rule exactly). Importing this package imports keras.
"""

from __future__ import annotations

from policy.callbacks.atomic import AtomicModelCheckpoint
from policy.callbacks.backup import PolicyBackup, Preempted
from policy.callbacks.base import StopRecord
from policy.callbacks.budget import StopAfterEpochs, StopAfterSteps, StopAfterTime
from policy.callbacks.checkpoints import PeriodicCheckpoint, TopKCheckpoint
from policy.callbacks.condition import ConditionStopping
from policy.callbacks.fit_start import FitStart
from policy.callbacks.folders import CreateFolder
from policy.callbacks.lr_log import LearningRateLogger
from policy.callbacks.metric_check import MetricCheck
from policy.callbacks.minimum import MinimumEpochs, MinimumSteps, StopHold, StopRelease
from policy.callbacks.recorder import TerminateOnNaNRecorder
from policy.callbacks.retention import KeepLastModelCheckpoint
from policy.callbacks.rollback import RestoringReduceLROnPlateau
from policy.callbacks.schedules import (
    CosineSegment,
    DecaySegment,
    HoldSegment,
    InverseSqrtSegment,
    LearningRateChain,
    LinearSegment,
    MilestoneSegment,
    ScheduledLearningRate,
    WarmupSegment,
)
from policy.callbacks.step_schedule import HandoverReduceLROnPlateau, PolicyLearningRateSchedule, StepLearningRate
from policy.callbacks.timed import TimedCheckpoint

__all__ = [
    "AtomicModelCheckpoint",
    "ConditionStopping",
    "CosineSegment",
    "CreateFolder",
    "DecaySegment",
    "FitStart",
    "HandoverReduceLROnPlateau",
    "HoldSegment",
    "InverseSqrtSegment",
    "KeepLastModelCheckpoint",
    "LearningRateChain",
    "LearningRateLogger",
    "LinearSegment",
    "MetricCheck",
    "MilestoneSegment",
    "MinimumEpochs",
    "MinimumSteps",
    "PeriodicCheckpoint",
    "PolicyBackup",
    "PolicyLearningRateSchedule",
    "Preempted",
    "RestoringReduceLROnPlateau",
    "ScheduledLearningRate",
    "StepLearningRate",
    "StopAfterEpochs",
    "StopAfterSteps",
    "StopAfterTime",
    "StopHold",
    "StopRecord",
    "StopRelease",
    "TerminateOnNaNRecorder",
    "TimedCheckpoint",
    "TopKCheckpoint",
    "WarmupSegment",
]
